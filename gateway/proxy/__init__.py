"""The request path, in order: fastlane → endpoint → admission: routing → route_policy (the
bearer credential from gateway.tokens.bearer, or the browser's cookies) → the route's access
policy (gateway.policy) → route_limits (token_buckets) → headers → forwarder (HTTP) or
websocket → upstream (the lean HTTP/1.1 client)."""
