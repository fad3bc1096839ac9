// Package auth is the logic of users, roles and tokens, without HTTP: what
// the replicated state holds (State), how it changes (Change, applied in log
// order by package kv), how a request proves who sent it (signed tokens), what
// a user may touch (Perms), and how failed logins are slowed (Throttle).
//
// Guarantees:
//
//   - Determinism. State.Apply depends only on the state, the Change and the
//     log index, so every replica that applies the same log holds the same
//     users, roles and token secret. Whatever is random (the secret, the
//     salt of a password hash) is chosen by the proposer and carried in the
//     Change.
//   - Immutability. A *State is never modified: Apply returns a new one, so
//     a State handed to a reader (a request being authorized, a snapshot
//     being written) stays consistent forever.
//   - Revocation. A user's Generation is the log index of the last change of
//     its password or roles (or of its creation). A token names the
//     generation it was issued for, so it stops working when the user is
//     deleted (a re-created user has a new generation), or its password or
//     roles change. Permissions of roles are read at each request, so a
//     change of a role applies at once without revoking tokens.
//   - Tokens are HMAC-SHA256 over the user name, its generation and the
//     expiry, under a secret created once per cluster (ChangeInit) and kept
//     in the replicated state: any node verifies a token any node issued.
//   - Passwords are kept as bcrypt hashes only; the log, snapshots and
//     every answer hold the hash, never the password.
//   - The built-in role RootRole may do everything, cluster and auth
//     administration included; no other role can be given those rights. It
//     cannot be defined, changed or deleted.
//   - Every decoder (ParseToken, UnmarshalChange, UnmarshalState) refuses
//     malformed input with an error wrapping ErrMalformed and never panics;
//     each is fuzzed.
package auth
