// Package nft builds, renders, applies, reads back and removes ftpnft's
// nftables table over netlink (github.com/google/nftables); no nft binary is
// involved.
//
// A [Config] says what the user wants (roles, control ports, policy, extra
// services, port forwards and masquerade). [Build] turns it into a
// [Ruleset], the desired table, which can be printed with [Ruleset.Render]
// in nft syntax or sent to the kernel with [Apply]. [ReadStatus] reads the
// table back and [Remove] deletes it.
//
//	rs, err := nft.Build(nft.DefaultConfig())
//	if err != nil { ... }                   // invalid configuration, nothing sent
//	res, err := nft.Apply(ctx, rs, nft.WithNetNS("/var/run/netns/ftp"))
//
// Every call that reaches the kernel takes a context first; ending it ends
// a wait for the kernel's answers to what ftpnft sends itself (the
// generation, its table, set elements, batches) and stops between reads;
// the reads done through google/nftables (chains, rules, objects) cannot be
// interrupted. [Dump] shows any inet table as the
// kernel holds it, in nft syntax. [WatchCommits] reports every batch
// committed in the namespace, by anyone, and whether it touched the table:
// what a daemon needs to keep the table applied without polling.
//
// # Layout
//
// The package is one pipeline, a file per step: configuration (values.go,
// config.go) -> model (build.go, ruleset.go, stmt.go, sets.go) -> what the
// kernel holds (observed.go, fingerprint.go, state.go) -> plan (plan.go,
// apply.go, status.go, diff.go) -> encoding (encode.go) -> transport
// (transport.go, options.go). watch.go follows the ruleset's commits.
// Each statement type in stmt.go encodes itself, renders itself and
// recognises itself in what the kernel reports.
//
// # Other firewalls and tracing
//
// [Coexistence] reads the base chains of every other table at the hooks
// FTP's packets pass and evaluates them statically ([Finding]); [Trace]
// follows FTP's packets through every table with a temporary table
// ([TraceTable]) of nftrace marks and log copies, and decodes the kernel's
// trace events ([TraceEvent]).
//
// # Testing without root
//
// [WithKernel] sends every request to a [Kernel] instead: package
// github.com/ftpnft/ftpnft/nft/nfttest has an in-memory one.
//
// # Roles
//
// A host can be an FTP server ([RoleServer]: the helper is assigned to
// inbound control connections in prerouting and the input chain admits
// them), an FTP client ([RoleClient]: the helper is assigned in the output
// hook, so the server's active-mode data connections are expected) or a
// router ([RoleRouter]: forwarded control connections get the helper and a
// forward chain applies the policy), or several of these. A router can
// forward a port to an inner server ([DNAT]; nf_nat_ftp rewrites the inner
// server's PASV/EPSV replies) and masquerade inner clients behind an
// interface (nf_nat_ftp rewrites their PORT/EPRT commands). In every policy
// chain RELATED connections are admitted only when the ftp helper expected
// them.
//
// # Hardening
//
// RELATED data connections are admitted only to [Config.RelatedPorts]
// (unprivileged by default). [Config.Sources] (interval sets),
// [Config.MaxConnPerSource] (ct count) and [Config.ConnRate] (a per-source
// meter) check new control connections in a regular chain "ftp-control";
// [Config.PassivePorts] opens a passive range for FTPS. [Config.AdmitsNew]
// tells whether the input policy admits a new connection, for lockout
// checks.
//
// # Atomicity and ownership
//
// Apply sends one netlink batch. When ftpnft's table already exists, the
// batch holds only the difference ([Plan], which [PlanApply] returns
// without sending it): rules added at their place, deleted, or replaced by
// handle; set elements added and deleted; a chain's policy changed in
// place. What does not change keeps its handle, counters and run-time
// state (per-source connection counts, rate meters). The kernel either
// holds the old table or the new one, never a mix, and a failed batch
// changes nothing. When the kernel already holds exactly the desired table
// (compared expression by expression, counters aside) Apply sends nothing
// at all.
//
// ftpnft sends its batches itself (google/nftables v0.3.0 only encodes
// them here) so that two things hold. First, a batch begins with the
// ruleset generation ID at which the table was read (NFT_MSG_GETGEN, then
// NFNL_BATCH_GENID, sent with github.com/mdlayher/netlink): the kernel
// checks it under the lock that serializes all nf_tables transactions and
// refuses the whole batch when another writer committed in between. Apply
// and Remove then read again; after five such attempts they give up with
// [ErrConcurrent]. Two racing installs thus end with one of the two
// rulesets, whole. Second, the kernel's answer to every message of the
// batch is read by its sequence number, so a rejected batch is reported
// with the message that caused it ([Error.Step]).
//
// The table carries a stamp: a digest of the ruleset last applied and the
// generation its batch led to, in the user data of the one rule of its
// chain "stamp", which every change replaces by handle (the kernel fixes a
// table's own user data when it creates it). While the generation has not
// moved since, a re-install of the same ruleset reads nothing else, and
// address sets need not be listed (a million elements take the kernel a
// minute): Apply and ReadStatus take them from the ruleset wanted, or from
// what [WithStateDir] recorded, when the stamp proves it. Otherwise Apply
// compares the table expression by expression.
//
// The table's own user data holds the stamp it was created with: the proof
// of ownership. A table is ftpnft's own when its user data holds it,
// whatever has become of its rules. A table from
// before the digest is ftpnft's when it has rules and all of them carry
// ftpnft's comment ("ftpnft: ..."), as the text of [Ruleset.Render] makes
// them. Any other table of the same name is left untouched (not even its
// sets are read) and Apply and Remove fail with [ErrNotOwned]. Tables,
// chains and objects outside ftpnft's table are never read for changes nor
// written.
//
// A table of ftpnft's that was changed since ftpnft wrote it (flushed with
// `nft flush table`, a rule added or deleted by hand) no longer matches its
// digest: [Status.Modified] says so and [Status.Differences] say what
// differs; Apply repairs it by difference ([Result.Repaired]) and Remove
// deletes it. Nothing a person can do to the table by hand locks ftpnft out of it.
//
// When the kernel's answers to a batch overflow the socket buffer, Apply
// does not guess: the generation tells whether anything was committed, and
// the stamp whether it was ftpnft's batch.
//
// # Namespaces
//
// [WithNetNS] and [WithNetNSFd] create the netlink socket inside another
// network namespace. The calling thread never changes namespace.
//
// # Errors
//
// Kernel and connection failures are returned as *[Error], which names the
// operation, the table, the batch message the kernel rejected (Step), and
// unwraps to the cause, so that callers can test it with errors.Is:
//
//	os.ErrPermission       not root / no CAP_NET_ADMIN (EPERM)
//	os.ErrNotExist         the network namespace does not exist, or the
//	                       kernel lacks something a message refers to
//	                       (ENOENT, e.g. the "ftp" ct helper type)
//	errors.ErrUnsupported  the kernel lacks nf_tables or an operation
//	                       (EOPNOTSUPP)
//	ErrNotOwned            a table of ftpnft's name that ftpnft did not create
//	ErrConcurrent          the ruleset kept changing underneath
//	syscall.Errno          any other kernel errno, e.g. syscall.EINVAL
//
// Invalid configuration is reported by [Build] and the Parse functions
// before any netlink traffic, as plain errors naming the bad value (a
// [*RoleError] when a role is missing).
package nft
