"""The request path, in order: fastlane → endpoint → routing → route_policy (the bearer
credential from gateway.tokens.bearer, or the browser's cookies) → headers → forwarder
(HTTP) or websocket → upstream (the lean HTTP/1.1 client)."""
