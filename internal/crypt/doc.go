// Package crypt encrypts a node's data at rest: the frames of its WAL and its
// snapshot files, with AES-256-GCM.
//
// # Keys
//
// The operator holds a master key (32 bytes, in a file named by
// --encryption-key-file; see ParseMasterKey for the encodings accepted). It
// never encrypts data itself: it wraps (encrypts with AES-256-GCM) the data
// keys, random 32-byte keys kept in the data directory's keys file (KeysFile),
// each with a number, its key id. One data key is current: new frames and
// files are sealed under it. Rotation (Rotate) adds a new current data key and
// wraps every data key, old ones included, under a new master key; data sealed
// under an old data key stays readable because every frame and file names the
// key id it was sealed under. The keys file records the master key's
// fingerprint (an HMAC of a fixed string under the key, which reveals nothing
// about it), so that a wrong master key is reported as exactly that
// (ErrWrongKey), and damage to the file as damage (ErrCorrupt).
//
// # Nonces
//
// AES-GCM must never see one nonce twice under one key. Nothing sealed here
// uses a data key directly: every writing session (an opened WAL, one
// snapshot file) draws a random 128-bit salt and seals under the subkey
// HKDF-SHA256(data key, salt, "distkv "+domain), with nonces counting up from
// zero. The salt, the counter and the key id travel with the sealed bytes. A
// nonce thus repeats under a subkey only if two sessions draw the same salt
// (probability about n^2/2^129 for n sessions), never because a process
// restarted, a segment was cut, or a frame was rewritten at an offset used
// before (the counter only grows). The domain ("wal", "snap") keeps the
// subkeys of different uses apart.
//
// # Formats
//
// A sealed frame (Sealer, Opener) is
//
//	key id u32 | salt [16] | counter u64 | ciphertext | GCM tag [16]
//
// with all integers little-endian; the nonce is 4 zero bytes and the counter.
// The caller passes additional data that the tag authenticates (the WAL: its
// segment number and the frame's flags and decoded length).
//
// A sealed stream (NewWriter, NewReader) is a header (StreamMagic, version,
// key id, salt, chunk size, CRC32C) followed by chunks (length u32, sealed
// bytes), the n-th sealed with nonce n and additional data the header and a
// byte saying whether it is the last chunk, so that a stream cut at a chunk
// boundary, reordered chunks or bytes after the last chunk are all detected.
package crypt
