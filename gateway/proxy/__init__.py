"""The request path, in order: fastlane → endpoint → routing → bearer → headers →
forwarder (HTTP) or websocket → upstream (the lean HTTP/1.1 client)."""
