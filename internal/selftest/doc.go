// Package selftest proves on the running kernel, without touching the host's
// ruleset, that ftpnft makes FTP work: it creates two throwaway network
// namespaces joined by veth, installs ftpnft's ruleset (policy drop) in the
// server's, runs FTP sessions (passive and active, IPv4 and IPv6) between an
// FTP server and client built into the binary, and observes each step: the
// helper assigned to the control connection, the expectation created, the data
// connection admitted as RELATED, the bytes transferred. Then the negative
// control: the same policy without the helper blocks the passive data
// connection and creates no expectation.
//
// # Namespaces without setns
//
// Each peer is this binary re-executed (see [PeerCommand]) in a new network
// namespace (CLONE_NEWNET), so every thread of the peer lives there and the
// FTP server and client need no namespace awareness. They are the package's
// own, a few hundred lines that speak what the ftp helper reads: an FTP
// library (with TLS and HTTP behind it) made every ftpnft command start 0.5
// ms later. The parent never changes
// namespace: it reaches each peer's namespace through /proc/PID/ns/net for
// the veth link, the ruleset and the conntrack watch. The namespaces vanish
// with the peers; the peers are killed when Run returns or the parent dies
// (PR_SET_PDEATHSIG), so Ctrl-C leaves nothing behind.
package selftest
