// Sign-in for the speaker page: the authorization-code flow with PKCE (S256), as Cognito's
// managed login expects (/oauth2/authorize, /oauth2/token, the refresh-token grant). The local
// stack emulates the same endpoints, so this code runs unchanged locally and deployed.

const STORE = "broadcast.auth";
const PENDING = "broadcast.auth.pending";
const REFRESH_MARGIN_MS = 5 * 60 * 1000; // refresh a token that expires within 5 minutes

function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(bytes = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

function claims(jwt) {
  const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(decodeURIComponent(escape(atob(part))));
}

export class Auth {
  /** `config`: /config.json's `auth` ({authorizeUrl, tokenUrl, logoutUrl, clientId, scopes}). */
  constructor(config, { storage = sessionStorage, redirectUri = location.origin + location.pathname } = {}) {
    this.config = config;
    this.storage = storage;
    this.redirectUri = redirectUri;
    this.tokens = JSON.parse(storage.getItem(STORE) || "null");
  }

  get signedIn() {
    return Boolean(this.tokens?.refresh_token || this.tokens?.id_token);
  }

  get userName() {
    if (!this.tokens?.id_token) return "";
    const c = claims(this.tokens.id_token);
    return c.name || c["cognito:username"] || c.email || c.sub;
  }

  /** Go to the sign-in page (a redirect; the page comes back with ?code=...&state=...). */
  async signIn() {
    const verifier = randomString(48);
    const state = randomString(16);
    const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    this.storage.setItem(PENDING, JSON.stringify({ verifier, state }));
    const query = new URLSearchParams({
      response_type: "code",
      client_id: this.config.clientId,
      redirect_uri: this.redirectUri,
      scope: this.config.scopes,
      state,
      code_challenge: challenge,
      code_challenge_method: "S256",
    });
    location.assign(`${this.config.authorizeUrl}?${query}`);
  }

  /** On the way back from sign-in: trade the code for tokens. True when a sign-in completed. */
  async completeSignIn(url = new URL(location.href)) {
    const code = url.searchParams.get("code");
    if (!code) return false;
    const pending = JSON.parse(this.storage.getItem(PENDING) || "null");
    this.storage.removeItem(PENDING);
    history.replaceState(null, "", this.redirectUri); // the code is good once: keep it out of the address bar
    if (!pending || pending.state !== url.searchParams.get("state")) throw new Error("sign-in state mismatch");
    await this.#grant({ grant_type: "authorization_code", code, redirect_uri: this.redirectUri, code_verifier: pending.verifier });
    return true;
  }

  /** A valid ID token for a new connection, refreshed with the refresh token when it is about to expire. */
  async idToken() {
    if (!this.tokens) throw new Error("not signed in");
    const expires = claims(this.tokens.id_token).exp * 1000;
    if (expires - Date.now() < REFRESH_MARGIN_MS && this.tokens.refresh_token) {
      await this.#grant({ grant_type: "refresh_token", refresh_token: this.tokens.refresh_token });
    }
    return this.tokens.id_token;
  }

  signOut() {
    this.storage.removeItem(STORE);
    this.tokens = null;
  }

  async #grant(fields) {
    const response = await fetch(this.config.tokenUrl, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ client_id: this.config.clientId, ...fields }),
    });
    if (!response.ok) throw new Error(`token endpoint answered ${response.status}`);
    const fresh = await response.json();
    this.tokens = { ...this.tokens, ...fresh }; // a refresh grant keeps the refresh token
    this.storage.setItem(STORE, JSON.stringify(this.tokens));
  }
}
