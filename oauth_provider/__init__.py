"""An OAuth2 / OpenID Connect provider for Django on oauthlib and jwcrypto."""
