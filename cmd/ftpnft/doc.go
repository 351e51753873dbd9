// Command ftpnft installs, inspects and removes ftpnft's nftables table.
//
//	ftpnft render                       # the ruleset, in nft syntax
//	ftpnft install --policy drop        # create or update it, atomically
//	ftpnft status --json                # read it back, with counters
//	ftpnft uninstall                    # remove it
//	ftpnft expectations --watch         # see data connections being related
//	ftpnft doctor                       # check everything FTP needs, other firewalls too
//	ftpnft doctor --trace               # tell each new FTP session's story, to the drop
//	ftpnft selftest                     # prove it in throwaway namespaces
//	ftpnft install --help               # one command's help; ftpnft --version
//
// Every command but selftest takes --netns NAME|PATH. Exit status: 0 ok, 1 failure,
// 2 usage or invalid input. The command is a thin layer over the nft,
// conntrack, internal/selftest and helper packages: it parses flags and formats
// output; it makes no netlink calls of its own.
package main
