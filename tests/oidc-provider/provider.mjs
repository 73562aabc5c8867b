#!/usr/bin/env node
// Loopback OpenID Connect provider for warrant's integration and browser tests.
//
// Wraps the certified `oidc-provider` package (panva) with one confidential
// client, a fixed set of users, and a minimal login form instead of the
// package's development interactions. See README.md in this directory.
//
//   node tests/oidc-provider/provider.mjs --port PORT [--issuer URL] \
//     --client-id ID --client-secret SECRET --redirect-uri URI [--redirect-uri URI2 ...]
//
// stdout carries exactly one line, `oidc-provider ready <issuer>`, once the
// listener is bound. Everything else (package notices, errors) goes to stderr.

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

// oidc-provider prints its development notices with console.info (stdout).
// Keep stdout reserved for the ready line so callers can parse it reliably.
console.info = console.error;
console.log = console.error;

const { default: Provider } = await import('oidc-provider');

function usage(message) {
  if (message) process.stderr.write(`provider.mjs: ${message}\n`);
  process.stderr.write(
    'usage: node provider.mjs --port PORT [--issuer URL] --client-id ID '
      + '--client-secret SECRET --redirect-uri URI [--redirect-uri URI ...]\n',
  );
  process.exit(2);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      port: { type: 'string' },
      issuer: { type: 'string' },
      'client-id': { type: 'string' },
      'client-secret': { type: 'string' },
      'redirect-uri': { type: 'string', multiple: true },
      help: { type: 'boolean' },
    },
    strict: true,
    allowPositionals: false,
  }));
} catch (err) {
  usage(err.message);
}
if (args.help) usage();

const port = Number(args.port);
if (args.port === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
  usage('--port must be an integer between 0 and 65535 (0 picks a free port)');
}
const clientId = args['client-id'];
const clientSecret = args['client-secret'];
const redirectUris = args['redirect-uri'] ?? [];
if (!clientId) usage('--client-id is required');
if (!clientSecret) usage('--client-secret is required');
if (redirectUris.length === 0) usage('at least one --redirect-uri is required');

const HOST = '127.0.0.1';
const PASSWORD = 'correct horse battery staple';

// Fixed test accounts. `sub` is the login name.
const USERS = new Map(
  [
    ['alice', 'alice@example.com', 'Alice Admin'],
    ['bob', 'bob@example.com', 'Bob Approver'],
    ['carol', 'carol@example.com', 'Carol Auditor'],
    ['dave', 'dave@example.com', 'Dave Owner'],
  ].map(([login, email, name]) => [login, { login, email, name }]),
);

function findUser(id) {
  return typeof id === 'string' ? USERS.get(id) : undefined;
}

function passwordMatches(candidate) {
  const a = crypto.hash('sha256', String(candidate ?? ''), 'buffer');
  const b = crypto.hash('sha256', PASSWORD, 'buffer');
  return crypto.timingSafeEqual(a, b);
}

function esc(value) {
  return String(value ?? '')
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`;
}

function sendHtml(res, status, html) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Content-Length', Buffer.byteLength(html));
  res.end(html);
}

// A fresh RS256 signing key per run; published at the jwks_uri.
function signingKeys() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { keys: [{ ...jwk, use: 'sig', alg: 'RS256' }] };
}

function buildProvider(issuer) {
  const configuration = {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        client_name: 'warrant',
        redirect_uris: redirectUris,
        grant_types: ['authorization_code'],
        response_types: ['code'],
        // client_secret_post is accepted too: oidc-provider treats the two
        // shared-secret methods as interchangeable at the token endpoint.
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: 'RS256',
        scope: 'openid profile email',
      },
    ],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    responseTypes: ['code'],
    scopes: ['openid', 'profile', 'email'],
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
    },
    // Put scope-derived claims (email, name, ...) into the ID token as well,
    // not only into the userinfo response.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    jwks: signingKeys(),
    cookies: {
      keys: [crypto.randomBytes(32).toString('base64url')],
      // Distinct names: browsers do not isolate cookies by port, so on
      // 127.0.0.1 these share a jar with the application under test.
      names: {
        session: 'op_session',
        interaction: 'op_interaction',
        resume: 'op_interaction_resume',
      },
      // secure is only added by oidc-provider when the request itself is
      // https (ctx.secure), so plain http://127.0.0.1 works.
      long: { httpOnly: true, sameSite: 'lax' },
      short: { httpOnly: true, sameSite: 'lax' },
    },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          ctx.type = 'html';
          ctx.body = page('Sign out', `<h1>Sign out</h1>
${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes">Sign out</button>
<button type="submit" form="op.logoutForm">Stay signed in</button>`);
        },
        async postLogoutSuccessSource(ctx) {
          ctx.type = 'html';
          ctx.body = page('Signed out', '<h1>Signed out</h1>\n<p>You have been signed out.</p>');
        },
      },
    },
    interactions: {
      url: async (ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    async findAccount(ctx, id) {
      const user = findUser(id);
      if (!user) return undefined;
      return {
        accountId: user.login,
        async claims() {
          return {
            sub: user.login,
            email: user.email,
            email_verified: true,
            name: user.name,
            preferred_username: user.login,
          };
        },
      };
    },
    clientBasedCORS: () => true,
    async renderError(ctx, out, error) {
      ctx.type = 'html';
      const rows = Object.entries(out)
        .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`)
        .join('\n');
      ctx.body = page('Error', `<h1>Error</h1>\n<dl>\n${rows}\n</dl>`);
      if (error?.statusCode === undefined || error.statusCode >= 500) {
        process.stderr.write(`oidc-provider: renderError: ${error?.stack ?? error}\n`);
      }
    },
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 300,
      ClientCredentials: 600,
      DeviceCode: 600,
      BackchannelAuthenticationRequest: 600,
      PreAuthorizedCode: 600,
      IdToken: 3600,
      RefreshToken: 86400,
      Interaction: 3600,
      Session: 86400,
      Grant: 86400,
    },
  };

  const provider = new Provider(issuer, configuration);

  provider.on('server_error', (ctx, err) => {
    process.stderr.write(`oidc-provider: server_error: ${err?.stack ?? err}\n`);
  });
  for (const event of [
    'authorization.error',
    'grant.error',
    'userinfo.error',
    'discovery.error',
    'jwks.error',
    'end_session.error',
    'introspection.error',
    'revocation.error',
    'pushed_authorization_request.error',
  ]) {
    provider.on(event, (ctx, err) => {
      const detail = [...new Set([err?.error_description, err?.error_detail, err?.cause?.message])]
        .filter(Boolean)
        .map((d) => `: ${d}`)
        .join('');
      process.stderr.write(`oidc-provider: ${event}: ${err?.message ?? err}${detail}\n`);
    });
  }

  return provider;
}

function loginForm({ uid, login = '', error, clientName }) {
  const alert = error ? `<p role="alert" id="error">${esc(error)}</p>\n` : '';
  return page('Sign in', `<h1>Sign in</h1>
<p>to continue to ${esc(clientName)}</p>
${alert}<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<p>
<label for="login">Username</label>
<input id="login" name="login" type="text" autocomplete="username" autocapitalize="none" spellcheck="false" autofocus value="${esc(login)}">
</p>
<p>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password">
</p>
<p>
<button type="submit">Sign in</button>
</p>
</form>`);
}

async function readForm(req, limit = 64 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw Object.assign(new Error('request body too large'), { status: 413 });
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// Grant everything that was requested (within the client's allowed scopes),
// so no separate consent step is ever shown.
async function grantFor(provider, interaction, accountId) {
  const { params, prompt, grantId: existingGrantId } = interaction;
  let grant = existingGrantId ? await provider.Grant.find(existingGrantId) : undefined;
  if (!grant || grant.accountId !== accountId || grant.clientId !== params.client_id) {
    grant = new provider.Grant({ accountId, clientId: params.client_id });
  }

  const details = prompt?.name === 'consent' ? prompt.details : {};
  const scope = details.missingOIDCScope?.join(' ') ?? params.scope;
  if (scope) grant.addOIDCScope(scope);

  const claims = new Set(details.missingOIDCClaims ?? []);
  if (!details.missingOIDCClaims && typeof params.claims === 'string') {
    try {
      const requested = JSON.parse(params.claims);
      for (const target of ['id_token', 'userinfo']) {
        for (const name of Object.keys(requested?.[target] ?? {})) claims.add(name);
      }
    } catch {
      // malformed claims parameter is rejected by the authorization endpoint
    }
  }
  if (claims.size) grant.addOIDCClaims([...claims]);

  for (const [indicator, scopes] of Object.entries(details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }

  return grant.save();
}

async function handleInteraction(provider, req, res, url) {
  const match = /^\/interaction\/([^/]+)(\/login|\/abort)?\/?$/.exec(url.pathname);
  if (!match) return false;
  const [, uid, action] = match;
  const method = req.method;

  let interaction;
  try {
    interaction = await provider.interactionDetails(req, res);
  } catch (err) {
    sendHtml(res, 400, page('Sign-in session expired', `<h1>Sign-in session expired</h1>
<p role="alert">${esc(err.error_description ?? err.message)}. Start the sign-in again from the application.</p>`));
    return true;
  }
  if (interaction.uid !== uid) {
    sendHtml(res, 400, page('Sign-in session mismatch', '<h1>Sign-in session mismatch</h1>\n<p role="alert">This sign-in page does not belong to the current sign-in session.</p>'));
    return true;
  }

  const client = await provider.Client.find(interaction.params.client_id);
  const clientName = client?.clientName ?? interaction.params.client_id;

  if (!action && method === 'GET') {
    if (interaction.prompt.name === 'login') {
      sendHtml(res, 200, loginForm({ uid, clientName, login: interaction.params.login_hint }));
      return true;
    }
    // Already authenticated (session exists): consent is implicit.
    const accountId = interaction.session?.accountId;
    const grantId = await grantFor(provider, interaction, accountId);
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return true;
  }

  if (action === '/login' && method === 'POST') {
    const form = await readForm(req);
    const login = form.get('login') ?? '';
    const password = form.get('password') ?? '';
    const user = findUser(login.trim());
    const ok = passwordMatches(password);
    if (!user || !ok) {
      sendHtml(res, 200, loginForm({
        uid, clientName, login, error: 'Invalid username or password.',
      }));
      return true;
    }
    const grantId = await grantFor(provider, interaction, user.login);
    await provider.interactionFinished(req, res, {
      login: { accountId: user.login },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
    return true;
  }

  if (action === '/abort' && (method === 'GET' || method === 'POST')) {
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
    return true;
  }

  res.statusCode = 405;
  res.setHeader('Allow', action === '/login' ? 'POST' : 'GET');
  res.end();
  return true;
}

let provider;
let providerCallback;
let issuerPath = '';

const server = http.createServer(async (req, res) => {
  if (!providerCallback) {
    res.statusCode = 503;
    res.end();
    return;
  }
  try {
    // An issuer with a path (http://127.0.0.1:PORT/some/path) is served both
    // under that path and at the root; endpoint URLs in discovery follow the
    // path the discovery document was requested under.
    if (issuerPath && (req.url === issuerPath || req.url.startsWith(`${issuerPath}/`)
        || req.url.startsWith(`${issuerPath}?`))) {
      req.originalUrl = req.url;
      req.url = req.url.slice(issuerPath.length) || '/';
      if (req.url.startsWith('?')) req.url = `/${req.url}`;
    }
    const url = new URL(req.url, `http://${HOST}`);
    if (url.pathname.startsWith('/interaction/')) {
      if (await handleInteraction(provider, req, res, url)) return;
    }
    providerCallback(req, res);
  } catch (err) {
    process.stderr.write(`oidc-provider: interaction error: ${err?.stack ?? err}\n`);
    if (!res.headersSent) {
      sendHtml(res, err?.status ?? 500, page('Error', `<h1>Error</h1>\n<p role="alert">${esc(err?.message)}</p>`));
    } else {
      res.destroy();
    }
  }
});

server.on('error', (err) => {
  process.stderr.write(`oidc-provider: listen error: ${err?.stack ?? err}\n`);
  process.exit(1);
});

server.listen(port, HOST, () => {
  const actualPort = server.address().port;
  const issuer = args.issuer ?? `http://${HOST}:${actualPort}`;
  try {
    provider = buildProvider(issuer);
  } catch (err) {
    process.stderr.write(`oidc-provider: configuration error: ${err?.stack ?? err}\n`);
    process.exit(1);
  }
  issuerPath = new URL(issuer).pathname.replace(/\/+$/, '');
  providerCallback = provider.callback();
  process.stdout.write(`oidc-provider ready ${issuer}\n`);
});

let stopping = false;
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => {
    process.stderr.write(`oidc-provider: forced exit after ${signal}\n`);
    process.exit(0);
  }, 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
