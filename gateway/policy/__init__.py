"""Authorization rules: pure logic over a principal and the request line."""
