// Package helper describes the kernel's FTP conntrack helper: what it is
// called, which protocol and control port it serves, which NAT companion
// rewrites its payloads, and whether the running kernel can provide it.
//
// It knows nothing about nftables or netlink. The nft package builds rules
// from the [FTP] spec; the command line validates user input with
// [ParsePorts] and [ParsePort]; status and selftest report [Probe]; doctor
// reads a namespace's [Sysctls] ([ReadSysctls]) and the tables of
// iptables-legacy in it ([LegacyTables]), on a thread of their own that
// enters the namespace. The control channel's lines that the helper reads,
// PASV's and EPSV's replies and the PORT and EPRT commands, are parsed by
// [ParsePassive] and [ParseActive]: for doctor --trace, and for selftest's
// own FTP peer.
//
// # Why a helper must be assigned
//
// FTP names its data connections inside the control channel (PASV/EPSV
// replies, PORT/EPRT commands). The kernel's "ftp" helper reads the control
// channel and registers an expectation for each announced data connection,
// which then arrives in state RELATED. Since Linux 6.0 the kernel no longer
// assigns helpers by port number on its own (the nf_conntrack_helper sysctl
// is gone): a ruleset must attach the helper to the control connection with
// an nftables "ct helper" object.
//
// # Kernel capability
//
// [Probe] reads /sys/module/nf_conntrack_ftp. Built-in code shows up there
// only when it has module parameters, which nf_conntrack_ftp does ("ports"
// and "loose"); nf_nat_ftp has none and is therefore not visible in sysfs,
// so its presence is reported as unknown rather than guessed.
package helper
