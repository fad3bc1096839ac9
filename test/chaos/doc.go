// Package chaos runs randomized fault rounds against a real distkv cluster and
// checks what the clients saw for linearizability.
//
// TestChaos builds the distkv binary, starts three nodes whose every peer link
// passes through a netproxy.Mesh, and runs concurrent clients (each with one
// request in flight, each to a random node) against nine keys in three groups
// (g0/a .. g2/c) while a nemesis injects one fault
// at a time: kill -9 of a random node or of the leader followed by a restart,
// SIGSTOP/SIGCONT, isolating the leader, a majority/minority partition, and a
// one-way cut. The clients send linearizable and stale gets, linearizable and
// stale scans of a group's prefix (one page: limit 10), puts with unique
// values, puts conditional on prev_version, prev_revision or create_only,
// deletes (also on prev_version) and transactions comparing and writing keys
// of one group. Every operation is recorded with its call and return time; a
// write whose outcome is unknown (client timeout, broken connection, or a 503
// saying it may still have been applied) is kept with an open end, as
// porcupine intends; a refused connection, a 503 refusing a write before it
// was proposed (no leader) and a failed read are dropped. When the
// faults are healed, every group is scanned linearizably on every node: the nodes
// must agree, the values must be ones a client wrote, and these final reads are
// part of the checked history, so an acknowledged write that was lost shows up
// as a linearizability violation.
//
// The history is checked with github.com/anishathalye/porcupine against a
// model of one group (each key's value, version and revision; revisions grow
// in log order); the model is partitioned by group (model_test.go). Stale
// reads are checked for what they promise (stale_test.go): a value some write
// carried, and never going back in time on one node process. A log index
// claimed by two writes names a lost write (revisions_test.go), a
// linearizable read that misses a write acknowledged before it is named, and
// so is a read of a value whose write was answered as refused for certain (a
// 503 that does not say it may still have been applied), with that answer;
// the ledger names a final value of such a put the same way.
// On a violation the test writes porcupine's HTML visualization into its log
// directory and fails with its path; the directory, with every node's log, is
// kept when the test fails.
//
// The seed of the fault schedule and of the clients' choices is printed and
// reproduces them with -chaos.seed (timing on a real machine still varies):
//
//	go test ./test/chaos                                        # 2 rounds of 35 s and a sharded one (CI)
//	CHAOS_ROUNDS=5 CHAOS_DURATION=60s make chaos                # the same, longer
//	go test ./test/chaos -run 'TestChaos$' -chaos.rounds=1 -chaos.seed=42 -v  # replay a seed
//	go test ./test/chaos -run 'TestChaos$' -chaos.faults=kill,partition -v    # some fault kinds
//	SOAK_DURATION=30m make soak                                 # resources over time
//
// The nemesis also injects delay and loss on peer links, a partition held
// until the others' logs are compacted past the isolated follower (forcing a
// snapshot transfer), member replacement (remove, wipe, re-join under a new
// name, promote) and leadership transfer; see nemesis_test.go. The soak
// (soak_test.go) samples each node's RSS and open files into resources.csv
// and fails if they grow; it skips porcupine above -chaos.soak-check-ops.
//
// TestChaosSharded (-chaos.sharded-rounds, 1 by default, so CI runs one
// round of -chaos.duration) runs the same clients, ledger and checks against
// five nodes started with --replicas 3, --range-split-bytes 32KiB
// (-chaos.split-bytes), --range-split-qps 0, --placement-interval 300ms and
// --dead-node-timeout 4s. Two filler writers put keys of 1 KiB, each key once
// (-chaos.filler-rate a second, after a preload of 96), under prefixes
// before, between and after the groups ("a/", "g0x/", "g1x/", "g2x/", "z/"),
// so the key space splits into tens of ranges during the round and
// placement moves replicas to balance them.
//
// Each group must lie inside one range, since revisions are each range's own
// log index and a transaction across ranges is refused. Splits fall in
// filler key space: a range splits at the key that halves its bytes, a
// group's keys hold a few bytes against the filler's kilobytes, and a
// sentinel key with a one-byte value just before each group ("g0.", outside
// the prefix "g0/") takes the split that would otherwise fall at the group's
// first key present, g0/b when g0/a is deleted (seen once before the
// sentinels). Splits for load are off: they would cut at the clients' keys.
// At the end GET /cluster/ranges is checked: a group cut by a split is named
// in the log and the summary and its operations are left out of the checks,
// not failed (no group was cut in the rounds run with the sentinels).
//
// Revisions (porcupine's model, revisions claimed twice, stale reads,
// linearizable reads that miss an acknowledged write) are compared only
// within a group. A stale read going back in time on one node is counted,
// not failed, in a sharded round: a node that holds no replica of the key's
// range (or lost it to a move) forwards the read to the range's leader or
// another replica, which may have applied less than the one that answered
// before. Every acknowledged filler put must be on every node at the end (a
// linearizable scan of each filler prefix on each node), besides the ledger
// and the final scans. The round's summary line counts ranges at the start
// and end, splits ("range split by size" in the nodes' logs), replica moves
// ("placement change" lines: add_learner, promote, remove; a move is a
// promote), leader changes of any range (seen by polling GET /cluster/ranges
// every 250 ms, so a lower bound), filler puts lost and groups cut; the
// round fails if no range split or no replica moved.
//
// The sharded round injects every fault but snapshot-partition (it waits for
// one group's log index, which says nothing of the other ranges).
// member-replace takes the sharded path: DELETE /cluster/members/{id}, sent
// again while it answers 503 (the member's replicas are being moved away),
// then the slot joins again under a new name with --join and is left for
// placement to promote in the meta range and give replicas to; the fault is
// healed once every slot's member is a voter.
//
// kill-long, a kill -9 held for --dead-node-timeout + 4s so that placement
// moves the node's replicas away while it is down, is injected in sharded
// rounds (-chaos.sharded-kill-long=false leaves it out). The node comes back
// with replicas it was removed from: a member of each such range tells it
// so when it sends them messages, and it lets them go.
//
//	go test ./test/chaos -run TestChaosSharded -v                          # one sharded round
//	go test ./test/chaos -run TestChaosSharded -chaos.sharded-rounds=3 -v  # three
//
// -chaos.bin=PATH tests a prebuilt binary instead of building ../../cmd/distkv.
// DISTKV_TAGS builds it with build tags: with DISTKV_TAGS=testhooks and
// DISTKV_TESTHOOK=localreads or earlyack the nodes run a deliberately broken
// behaviour (internal/raftnode/testhooks.go), which the round must fail;
// `make chaos-selfcheck` runs both and passes only if the checker catches each.
//
// -short skips the round.
package chaos
