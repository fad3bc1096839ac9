// Package chaos runs randomized fault rounds against a real distkv cluster and
// checks what the clients saw for linearizability (and, in the bank round,
// transfers across ranges for strict serializability).
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
//	go test ./test/chaos                                        # 2 rounds of 35 s, a sharded and a bank one (CI)
//	CHAOS_ROUNDS=5 CHAOS_DURATION=60s make chaos                # TestChaos, TestChaosSharded and TestChaosBank, longer
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
// TestChaosBank (-chaos.bank-rounds, 1 by default, so CI runs one round of
// -chaos.duration) runs a bank on a cluster set up as a sharded round's
// (the same nodes, flags, filler writers, range poller, nemesis and
// faults), in place of the groups' clients and the ledger. Twenty accounts
// acct/00 .. acct/19 of 100 are created, each followed by padding keys
// (3 x 4000 bytes) until GET /cluster/ranges shows the accounts in at
// least 5 ranges; the pads are then deleted (ranges do not merge), and the
// accounts must still lie in 5 ranges or more at the end. Eight clients
// each read two random accounts (linearizable GETs through a random node)
// and POST /txn comparing both versions and putting both new balances (a
// random amount of 1 to 10 moved); most transfers span two ranges. An
// answer of 200 says committed or compare failed (with a revision); no
// answer, a 5xx or a 409 leaves the outcome unknown (it may have
// committed); a refused connection was not sent; any other 4xx fails the
// round. A scanner pages through acct/ (limit 7, each page continued at
// the first page's revision) through a random node, and after each scan
// scans at the previous scan's revision through another. Once healed, every
// node scans the accounts, and every version of every account is read
// (GET /key/K?version=N: value and revision).
//
// checkBank (bankcheck_test.go, unit-tested on a small history and on
// variants that must fail) then requires: every scan's pages at one
// revision, all accounts, summing to 2000, each account at the version it
// had at that revision; each account's versions starting at 100 with
// growing revisions, the last ones summing to 2000; the versions written
// at one revision being exactly the two puts of one transfer that compared
// the versions before them (the committed one answered with that revision,
// or one of unknown outcome, then counted as found committed); no two
// committed transfers having compared one version (a lost update); every
// committed transfer in the versions; a failed compare failing at its
// revision; every client read being a version of the chain; and real time:
// a transfer or current scan that began after another ended has a greater
// revision (a scan may equal a transfer's). The summary line counts
// transfers committed (and between two ranges), compare-failed, unknown
// (and found committed), refused, scans (current and earlier), faults and
// the sharded round's splits, moves and leader changes; the round fails if
// it committed fewer than 50 transfers or scanned fewer than 5 times of
// each kind. bank-history.txt in the log directory holds the history.
//
//	go test ./test/chaos -run 'TestChaosBank$' -v                     # one bank round
//	go test ./test/chaos -run 'TestChaosBank$' -chaos.bank-rounds=3 -v  # three
//
// -chaos.bin=PATH tests a prebuilt binary instead of building ../../cmd/distkv.
// DISTKV_TAGS builds it with build tags: with DISTKV_TAGS=testhooks and
// DISTKV_TESTHOOK=localreads or earlyack the nodes run a deliberately broken
// behaviour (internal/raftnode/testhooks.go), which the round must fail;
// `make chaos-selfcheck` runs both and passes only if the checker catches each.
//
// -short skips the round.
package chaos
