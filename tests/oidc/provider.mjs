// A real OpenID Connect provider (the npm package oidc-provider) for the dashboard's single sign-on
// tests, on loopback only. Its own development login form takes any login name; the name's claims
// (e.g. groups) come from ACCOUNTS. Started by tests/dashboard/test_sso.py:
//   PORT=... CLIENT_ID=... CLIENT_SECRET=... REDIRECT_URI=... ACCOUNTS='{"anna": {"groups": [...]}}' node provider.mjs
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const accounts = JSON.parse(process.env.ACCOUNTS || '{}');

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: process.env.CLIENT_ID,
    client_secret: process.env.CLIENT_SECRET,
    redirect_uris: [process.env.REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },  // S256 only: the package refuses "plain"
  scopes: ['openid', 'profile', 'groups'],
  claims: { openid: ['sub'], profile: ['preferred_username', 'name'], groups: ['groups'] },
  cookies: { keys: ['a-test-only-cookie-signing-key'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() { return { sub: id, preferred_username: id, ...(accounts[id] || {}) }; },
    };
  },
});

provider.listen(port, '127.0.0.1', () => { console.log(`ready ${provider.issuer}`); });
