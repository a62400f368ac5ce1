// The official MCP TypeScript SDK as an MCP client would use it: its auth module discovers the
// authorization server from the gateway's 401, registers, sends the person to /authorize with
// PKCE and `resource`, redeems the code, and refreshes. The "browser" here is fetch: it opens the
// login page, posts the form with its CSRF token and cookie, and reads the redirect's code.
// Usage: node client.mjs MCP_URL EMAIL PASSWORD; prints one JSON line with what happened.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";

const [mcpUrl, email, password] = process.argv.slice(2);
const redirectUrl = "http://127.0.0.1:33418/callback";

class TestProvider {
  constructor() {
    this.info = undefined;
    this.saved = undefined;
    this.verifier = undefined;
    this.code = undefined;
    this.logins = 0;
  }
  get redirectUrl() { return redirectUrl; }
  get clientMetadata() {
    return {
      client_name: "taskgate TS SDK test",
      redirect_uris: [redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  clientInformation() { return this.info; }
  saveClientInformation(info) { this.info = info; }
  tokens() { return this.saved; }
  saveTokens(tokens) { this.saved = tokens; }
  saveCodeVerifier(verifier) { this.verifier = verifier; }
  codeVerifier() { return this.verifier; }
  async redirectToAuthorization(url) {
    this.logins += 1;
    this.code = await logInWithFetch(url);
  }
}

function hidden(html, name) {
  const match = html.match(new RegExp(`<input type="hidden" name="${name}" value="([^"]*)"`));
  if (!match) throw new Error(`no ${name} field on the login page`);
  return match[1].replaceAll("&quot;", '"').replaceAll("&#x27;", "'").replaceAll("&amp;", "&");
}

async function logInWithFetch(authorizationUrl) {
  const start = await fetch(authorizationUrl, { redirect: "manual" });
  if (start.status !== 302) throw new Error(`/authorize answered ${start.status}`);
  const loginUrl = new URL(start.headers.get("location"), authorizationUrl);
  const page = await fetch(loginUrl);
  const cookie = page.headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");
  const html = await page.text();
  const form = new URLSearchParams({
    request: hidden(html, "request"),
    csrf: hidden(html, "csrf"),
    email,
    password,
  });
  const done = await fetch(new URL(loginUrl.pathname, loginUrl), {
    method: "POST",
    body: form,
    headers: { cookie },
    redirect: "manual",
  });
  if (done.status !== 302) throw new Error(`login answered ${done.status}`);
  const back = new URL(done.headers.get("location"));
  return back.searchParams.get("code");
}

async function connected(provider) {
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  const client = new Client({ name: "taskgate-ts-test", version: "1.0.0" });
  try {
    await client.connect(transport);
    return { client, transport };
  } catch (error) {
    if (!(error instanceof UnauthorizedError)) throw error;
    await transport.finishAuth(provider.code);
    const again = new Client({ name: "taskgate-ts-test", version: "1.0.0" });
    const retry = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
    await again.connect(retry);
    return { client: again, transport: retry };
  }
}

const provider = new TestProvider();
const { client } = await connected(provider);
const created = await client.callTool({ name: "create_task", arguments: { title: "from the TS SDK" } });
const listed = await client.callTool({ name: "list_tasks", arguments: {} });
// Now cached: the gateway's fast path answers it, and the SDK must read the same result.
const listedAgain = await client.callTool({ name: "list_tasks", arguments: {} });
await client.close();
const firstAccess = provider.saved.access_token;
const hadRefresh = Boolean(provider.saved.refresh_token);

// An expired access token: the SDK refreshes with the refresh token on the 401, by itself.
const waitMs = Number(process.env.WAIT_FOR_EXPIRY_MS || "0");
await new Promise((resolve) => setTimeout(resolve, waitMs));
const second = await connected(provider);
const after = await second.client.callTool({ name: "get_user_stats", arguments: {} });
await second.client.close();

console.log(JSON.stringify({
  created: created.structuredContent,
  titles: listed.structuredContent.tasks.map((t) => t.title),
  listedAgainSame: JSON.stringify(listedAgain) === JSON.stringify(listed),
  listedText: listed.content[0].text,
  stats: after.structuredContent,
  hadRefresh,
  refreshed: provider.saved.access_token !== firstAccess,
  clientId: provider.info.client_id,
  logins: provider.logins,
}));
