"""Values every test level agrees on: the JWT secret and the gateways' token audience."""

# Random, so a server started with it passes the weak-secret guard (shared/settings.py).
TEST_JWT_SECRET = "tst-9fQ2vL7xKp3RwZ8mN4bH6cJ1dT5gY0sA"
# Every test gateway's MCP_PUBLIC_URL (its token audience), whatever port it listens on, so one
# gateway token from sign_up() works with any of them. The OAuth tests use real URLs instead.
TEST_MCP_URL = "http://gateway.taskgate.test/mcp"
