// A real OpenID Connect provider for the SSO tests: oidc-provider (the
// certified Node implementation) on loopback, with one confidential client
// and one user. Interactions (login, consent) finish at once as "alice", so a
// test drives the whole authorization-code + PKCE flow by following redirects.
//
//   node provider.mjs PORT REDIRECT_URI[,REDIRECT_URI…]   (prints "ready" when listening)
import Provider from 'oidc-provider';

const [port, redirectUri] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'doppel',
    client_secret: 'doppel-test-secret',
    redirect_uris: redirectUri.split(','),
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  scopes: ['openid', 'email'],
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ['doppel-test-cookie-key'] },
  findAccount: async (ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub, email: `${sub}@idp.example.com`, email_verified: true }),
  }),
});
provider.proxy = false;

provider.use(async (ctx, next) => {
  if (!ctx.path.startsWith('/interaction/')) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const accountId = 'alice';
  const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
  grant.addOIDCScope('openid email');
  const grantId = await grant.save();
  await provider.interactionFinished(ctx.req, ctx.res, {
    login: { accountId },
    consent: { grantId },
  }, { mergeWithLastSubmission: false });
});

provider.listen(Number(port), '127.0.0.1', () => console.log('ready'));
