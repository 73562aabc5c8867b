//! Agent credentials over OAuth 2.0: client assertions, the token endpoint, JWKS, rotation,
//! introspection, revocation, bearer tokens at /v1/authorize.
