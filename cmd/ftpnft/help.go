package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// usage is the whole help: ftpnft help, ftpnft --help.
var usage = `ftpnft makes FTP work through an nftables firewall.

It creates the table "inet ftpnft" with a ct helper object of type "ftp",
assigns it to NEW connections to the FTP control ports, and installs a
policy that admits RELATED connections only when the ftp helper expected
them: on input for an FTP server or client host, on forward for a router,
with port forwarding (DNAT) to inner servers and masquerade for inner
clients.

Usage:
  ftpnft selftest            prove on this kernel, in throwaway namespaces,
                             that FTP works through ftpnft (and not without it)
  ftpnft install   [flags]   create or update the table (one atomic batch; idempotent)
  ftpnft uninstall [flags]   remove the table (removing nothing succeeds)
  ftpnft daemon    [flags]   install, then keep the table applied: re-apply within
                             a second when anyone deletes or changes it (run as a
                             systemd service; SIGHUP reloads, SIGTERM keeps the table)
  ftpnft status    [flags]   show the table as the kernel holds it
  ftpnft render    [flags]   print what install would create, in nft syntax
  ftpnft doctor    [flags]   check everything FTP through the firewall needs: the
                             helper, the table, other firewalls, conntrack, sysctls
  ftpnft ban [--for DURATION] ADDR|CIDR...
                             drop these sources first in every chain (for 90s,
                             10m, 1h, 7d; or until unbanned) and cut their open
                             FTP sessions
  ftpnft unban ADDR|CIDR...  lift their bans
  ftpnft bans [--json]       list the bans and the time each has left
  ftpnft sessions [--json] [--watch]
                             the FTP sessions the helper follows: control
                             connection, data connections with their traffic,
                             pending expectations
  ftpnft expectations [--helper ftp] [--json] [--watch]
                             list the kernel's conntrack expectations, or watch
                             them and the data connections they admit
  ftpnft version             print ftpnft's version and the Go version (also --version)
  ftpnft help [COMMAND]      show this help, or one command's (also COMMAND --help)

Flags (every command but selftest):
` + netnsFlags + `
Flags (install, uninstall, status, render, doctor, daemon):
` + tableFlags + `
Flags (install, status, render, doctor, daemon):
` + rulesetFlags + `
` + hardeningFlags + `
Flags (install):
` + installFlags + `
Flags (daemon):
` + daemonFlags + `
Flags (status, doctor):
` + statusFlags + `
Flags (expectations):
` + expectationsFlags + `
` + exitStatus

const netnsFlags = `  --netns NAME|PATH   work in a network namespace: a name under /var/run/netns
                      or a path such as /proc/PID/ns/net (never empty: leave
                      it out for this host's own)
`

const tableFlags = `  --table NAME        the table's name in family inet (default "ftpnft")
  --state-dir DIR     (not render) where install records the address sets it
                      applied, so that changing a large --source-file or
                      --block-file sends only the difference without reading
                      the set back from the kernel (default $FTPNFT_STATE_DIR,
                      else /var/lib/ftpnft)
  --config FILE       read these flags from a YAML file (see
                      examples/ftpnft.yaml); flags on the command line
                      override it
`

const rulesetFlags = `  --role LIST         what this host does with FTP, comma separated
                      (default "server"):
                        server  FTP servers run here: inbound control
                                connections get the helper; input admits them
                        client  this host opens FTP connections: outbound
                                ones get the helper, so active-mode data
                                connections come in as RELATED
                        router  FTP passes through: forwarded control
                                connections get the helper; a forward chain
                                applies the policy
  --ports LIST        FTP control ports, comma separated (default "21")
  --policy drop|accept
                      policy of the input chain (server, client) and the
                      forward chain (router) (default "drop")
  --allow PROTO/PORT  also admit this host's service, e.g. tcp/22, on input
                      (it is not forwarded); repeatable
  --dnat LISTENPORT=ADDR:PORT
                      (router) forward FTP control connections to this
                      host's LISTENPORT to an inner server, with nf_nat_ftp
                      rewriting its PASV/EPSV replies; IPv6 as [ADDR]:PORT;
                      repeatable
  --masquerade IFACE  (router) masquerade traffic leaving through IFACE, so
                      inner clients' active FTP works (nf_nat_ftp rewrites
                      PORT/EPRT); repeatable
`

const hardeningFlags = `  --related-ports LO-HI
                      ports that data connections the ftp helper expected may
                      go to (default "1024-65535": never a privileged port)
  --passive-ports LO-HI
                      (server) also admit new connections to this passive
                      range, for FTPS, whose encrypted control channel the
                      helper cannot read; from --source networks only, if given
  --source CIDR       (server, router) only these networks may open control
                      connections; IPv4 or IPv6, repeatable; held in an
                      interval set (one lookup for any number)
  --source-file FILE  as --source, one CIDR per line, '#' or ';' comments;
                      repeatable
  --block CIDR        drop this network's packets before anything else, in
                      every policy chain, for every role; repeatable
  --block-file FILE   as --block, one CIDR per line: FireHOL netsets and
                      Spamhaus DROP ('#' or ';' comments) load as they are
  --max-conn-per-source N
                      (server, router) refuse (TCP reset) a control connection
                      from a source that already has N (default 0: no limit)
  --conn-rate N/second|N/minute
                      (server, router) drop new control connections from a
                      source above this rate
`

const installFlags = `  --dry-run           print what install would send, in nft syntax, and send
                      nothing: the whole table when there is none, else the
                      rules, elements and chains that change (one line each)
  --force             install even if the policy would not admit new SSH
                      connections to the port of this SSH session
`

const daemonFlags = `  --log-format text|json
                      log lines on stderr as text (default) or one JSON
                      object each
  --metrics-listen ADDR:PORT
                      serve Prometheus metrics at /metrics and the table's
                      health at /healthz (200 when it holds the configuration,
                      503 when not), in the daemon's own namespace; nothing
                      listens without it
`

const statusFlags = `  --json              print one JSON object
  --verify            (status) read every set element, also when the table's
                      stamp proves it unchanged (a million networks take the
                      kernel seconds to list)
`

const expectationsFlags = `  --helper NAME       only this kernel helper's expectations (default "ftp";
                      "" for all)
  --watch             stream events until interrupted: new, destroy, related
                      (a data connection admitted as expected), lost
  --json              a JSON array, in the kernel's order (the table is sorted);
                      with --watch one JSON object per line
`

const exitStatus = `Exit status: 0 ok, 1 failure (permission, kernel, output not written), 2 usage
or invalid input. A failed install or uninstall changes nothing.
`

// commandHelp is the help of each command: what it does and its flags.
var commandHelp = map[string]string{
	"install": `Usage: ftpnft install [flags]

Creates or updates the table in one atomic batch. Installing what is
installed sends nothing; a table of ftpnft's that was changed by hand is
repaired; a table of the same name that ftpnft did not create is left alone
(exit 1).

Flags:
` + netnsFlags + tableFlags + rulesetFlags + hardeningFlags + installFlags + "\n" + exitStatus,
	"daemon": `Usage: ftpnft daemon [flags]

Installs the table as install does, then keeps it applied: it listens to the
kernel's announcements of committed nftables batches and, when a batch of
another program touched the table (nft flush ruleset from nftables.service, a
rule deleted by hand, a firewalld reload), applies the configuration again by
difference, within a second. A writer that keeps undoing the table is met
with a growing pause (up to a minute), logged with its pid and name. Idle, it
uses no CPU.

SIGHUP reads --config and the list files again; a configuration that does
not parse or validate is logged and the one in force stays. SIGTERM and
SIGINT end it with exit 0 and leave the table in place (ftpnft uninstall
removes it). Under systemd (Type=notify) it reports READY=1 after the first
apply, RELOADING=1 and READY=1 around a reload, STOPPING=1, and STATUS=.

Flags:
` + netnsFlags + tableFlags + rulesetFlags + hardeningFlags + daemonFlags + "\n" + exitStatus,
	"ban": `Usage: ftpnft ban [--netns N] [--table NAME] [--for DURATION] ADDR|CIDR...

Bans sources: their packets are dropped before anything else in ftpnft's
chains (control connections, the passive range, allowed services, forwarded
and port-forwarded connections), and their open FTP sessions (control
connections and the data connections they expected) are deleted from
conntrack, so they end at once. IPv4 and IPv6; an IPv4-mapped address
(::ffff:192.0.2.7, as vsftpd logs it when it listens on IPv6) bans the IPv4
address. --for DURATION (90s, 10m, 1h, 7d) makes the kernel lift the ban by
itself; without it the ban lasts until unbanned. Banning what is banned
extends it. Bans are run-time state of the table: install and the daemon
keep them; a table that is not installed has none (exit 1).

Flags:
` + netnsFlags + `  --table NAME        the table's name in family inet (default "ftpnft")
  --for DURATION      lift the ban after DURATION (default: never)
` + "\n" + exitStatus,
	"unban": `Usage: ftpnft unban [--netns N] [--table NAME] ADDR|CIDR...

Lifts the bans of these sources; what is not banned is not an error. Part of
a larger ban is lifted and the rest stays, for the rest of its time.

Flags:
` + netnsFlags + `  --table NAME        the table's name in family inet (default "ftpnft")
` + "\n" + exitStatus,
	"bans": `Usage: ftpnft bans [--netns N] [--table NAME] [--json]

Lists the bans: each network and the time it has left ("until unbanned",
0 seconds in JSON, for a ban without end). --json prints
[{"net":"192.0.2.7","seconds_left":3600}, ...].

Flags:
` + netnsFlags + `  --table NAME        the table's name in family inet (default "ftpnft")
  --json              print a JSON array
` + "\n" + exitStatus,
	"sessions": `Usage: ftpnft sessions [--netns N] [--json] [--watch]

Lists the FTP sessions the ftp helper follows: each control connection
(client to server), its data connections (passive: opened by the client;
active: by the server) with the packets and bytes they carried both ways,
and the expectations it has pending. Packets and bytes need conntrack's
accounting (net.netfilter.nf_conntrack_acct=1); without it sessions says how
to turn it on. --watch lists them again every second until Ctrl-C. --json
prints [{"control":{...},"helper":"ftp","data":[{"flow":{...},"mode":
"passive","packets":N,"bytes":N,...}],"expectations":[...]}].

Flags:
` + netnsFlags + `  --json              print a JSON array (with --watch, one a second)
  --watch             refresh every second until interrupted
` + "\n" + exitStatus,
	"uninstall": `Usage: ftpnft uninstall [flags]

Removes ftpnft's table and everything in it; removing nothing succeeds.

Flags:
` + netnsFlags + tableFlags + "\n" + exitStatus,
	"status": `Usage: ftpnft status [flags]

Shows the table as the kernel holds it: what is installed, whether it is
ftpnft's and unchanged, the rules' counters and other firewalls that drop
FTP's packets (warnings on stderr). Given flags or --config, it also says
whether the table matches that configuration, and which keys differ. Exit 0
when the table is ftpnft's, unchanged and (when compared) matching; 1
otherwise.

Flags:
` + netnsFlags + tableFlags + rulesetFlags + hardeningFlags + statusFlags + "\n" + exitStatus,
	"doctor": `Usage: ftpnft doctor [flags]

Checks what FTP through the firewall needs, each ok, warn or FAIL with what
was found and the fix: the kernel's ftp helper; ftpnft's table (installed,
unchanged, and matching the flags or --config when given); the helper's
assignment on the control ports; every other table's base chains that
decide FTP's packets (firewalld, ufw, Docker, iptables-nft scripts, ...);
the conntrack and expectation tables against their limits; control
connections that led to no expectation; and the sysctls that matter. Without
flags it checks what is installed. Exit 0 when no check failed, 1 when one
did, 2 for usage.

Flags:
` + netnsFlags + tableFlags + rulesetFlags + hardeningFlags + `  --json              print {"checks":[{"name","status","detail","fix"}]}
  --trace             instead of the checks, follow the FTP sessions that start
                      now through every table and tell each one's story, to
                      "admitted" or "dropped by ..." and the fix, until Ctrl-C;
                      --json: one object a line {"session","event","detail","fix"}.
                      A temporary table inet ftpnft-trace marks FTP's packets
                      (nftrace) and copies the control channel (log group
                      4742); it is removed when the trace ends
  --for DURATION      (with --trace) stop after DURATION, such as 10m
` + "\n" + exitStatus,
	"render": `Usage: ftpnft render [flags]

Prints what install would create, in nft syntax ("nft -f" loads it). It
never reaches the kernel or a namespace: --netns is accepted (not empty)
and not opened.

Flags:
` + netnsFlags + tableFlags + rulesetFlags + hardeningFlags + "\n" + exitStatus,
	"expectations": `Usage: ftpnft expectations [flags]

Lists the kernel's conntrack expectations (what data connections the
helper expects, for which control connection), or watches them and the data
connections they admit.

Flags:
` + netnsFlags + expectationsFlags + "\n" + exitStatus,
	"selftest": `Usage: ftpnft selftest

Proves on this kernel, in two throwaway network namespaces, that FTP works
through ftpnft's ruleset and not without the helper. Touches nothing on the
host; exits 0 only if every step was observed.

` + exitStatus,
	"version": `Usage: ftpnft version

Prints ftpnft's version, the commit it was built from, and the Go version.
`,
}

// help returns the help of cmd, or the whole help.
func help(cmd string) string {
	if h, ok := commandHelp[cmd]; ok {
		return h
	}
	return usage
}

// version is set at build time for releases (-ldflags "-X
// main.version=1.2.3"); otherwise the module's version is used.
var version = ""

// buildVersion is ftpnft's version: the one set at build time, else the
// module's, else "(devel)".
func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// versionLine says which ftpnft this is: its version, the commit it was
// built from (when Go recorded one), and the Go version.
func versionLine() string {
	v := buildVersion()
	var commit string
	modified := false
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ftpnft %s", v)
	if commit != "" {
		fmt.Fprintf(&b, " (commit %.12s", commit)
		if modified {
			b.WriteString(", modified")
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, " %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return b.String()
}
