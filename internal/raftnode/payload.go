package raftnode

import (
	"encoding/binary"
	"fmt"
)

// The payload of a normal log entry is
//
//	id      8 bytes, big-endian: the proposing node's proposal id; its top
//	        bit (payloadStamped) says a stamp follows
//	stamp   8 bytes, big-endian, > 0 (stamped entries only): the write's
//	        revision, handed out by the timestamp oracle (Config.Stamper)
//	command the kv.Command's encoding
//
// A leader stamps the entries it proposes when the group has a Stamper; a
// log written without one holds only unstamped entries, whose writes take
// the entry's index as their revision (kv.Store.ApplyStamped).
const payloadStamped = 1 << 63

// PayloadHeader is the size of an unstamped payload's header.
const PayloadHeader = 8

// DecodePayload splits a normal entry's payload into the proposal id, the
// stamp (0 if none) and the command's encoding.
func DecodePayload(data []byte) (id, stamp uint64, cmd []byte, err error) {
	if len(data) < PayloadHeader {
		return 0, 0, nil, fmt.Errorf("payload of %d bytes is too short", len(data))
	}
	id = binary.BigEndian.Uint64(data)
	if id&payloadStamped == 0 {
		return id, 0, data[PayloadHeader:], nil
	}
	if len(data) < PayloadHeader+8 {
		return 0, 0, nil, fmt.Errorf("stamped payload of %d bytes is too short", len(data))
	}
	stamp = binary.BigEndian.Uint64(data[PayloadHeader:])
	if stamp == 0 {
		return 0, 0, nil, fmt.Errorf("stamped payload with stamp 0")
	}
	return id &^ payloadStamped, stamp, data[PayloadHeader+8:], nil
}

// stampPayload returns data (an unstamped or stamped payload) stamped with
// stamp, in a new slice.
func stampPayload(data []byte, stamp uint64) []byte {
	id, _, cmd, err := DecodePayload(data)
	if err != nil {
		panic("raftnode: stamping a malformed payload: " + err.Error())
	}
	out := make([]byte, PayloadHeader+8, PayloadHeader+8+len(cmd))
	binary.BigEndian.PutUint64(out, id|payloadStamped)
	binary.BigEndian.PutUint64(out[PayloadHeader:], stamp)
	return append(out, cmd...)
}

// unstampPayload returns data without its stamp (data itself if it has none).
func unstampPayload(data []byte) []byte {
	id, stamp, cmd, err := DecodePayload(data)
	if err != nil || stamp == 0 {
		return data
	}
	out := make([]byte, PayloadHeader, PayloadHeader+len(cmd))
	binary.BigEndian.PutUint64(out, id)
	return append(out, cmd...)
}
