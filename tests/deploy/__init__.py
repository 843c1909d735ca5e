"""What ships beside the code: deploy/ manifests and dashboards, the demo IdP, the benchmark."""
