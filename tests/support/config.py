"""Values every test level agrees on: the JWT secret and the gateways' token audience."""

TEST_JWT_SECRET = "test-secret-" + "x" * 32
# Every test gateway's MCP_PUBLIC_URL (its token audience), whatever port it listens on, so one
# gateway token from sign_up() works with any of them. The OAuth tests use real URLs instead.
TEST_MCP_URL = "http://gateway.taskgate.test/mcp"
