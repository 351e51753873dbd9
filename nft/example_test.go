package nft_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/ftpnft/ftpnft/nft"
)

// Build a configuration, validate it and print the rules nft would load.
func ExampleBuild() {
	cfg := nft.DefaultConfig()
	cfg.Ports = []uint16{21, 2121}
	cfg.Allow = []nft.Service{{Protocol: "tcp", Port: 22}}
	rs, err := nft.Build(cfg)
	if err != nil {
		log.Fatal(err) // names the bad value; nothing was sent
	}
	for _, line := range strings.Split(rs.Render(), "\n") {
		if strings.Contains(line, "dport") {
			fmt.Println(strings.TrimSpace(line))
		}
	}
	// Output:
	// tcp dport 21 ct state new ct helper set "ftp-helper" counter comment "ftpnft: assign ftp helper port 21"
	// tcp dport 2121 ct state new ct helper set "ftp-helper" counter comment "ftpnft: assign ftp helper port 2121"
	// ct state related ct helper "ftp" tcp dport 1024-65535 counter accept comment "ftpnft: related ftp data"
	// tcp dport 21 ct state new counter accept comment "ftpnft: ftp control port 21"
	// tcp dport 2121 ct state new counter accept comment "ftpnft: ftp control port 2121"
	// tcp dport 22 counter accept comment "ftpnft: allow tcp/22"
}

// A router that forwards port 21 of its own addresses to an inner FTP
// server and masquerades inner clients behind eth0.
func ExampleDNAT() {
	fwd, err := nft.ParseDNAT("21=192.0.2.10:21")
	if err != nil {
		log.Fatal(err) // names the bad value
	}
	cfg := nft.DefaultConfig()
	cfg.Roles = []nft.Role{nft.RoleRouter}
	cfg.DNAT = []nft.DNAT{fwd}
	cfg.Masquerade = []string{"eth0"}
	rs, err := nft.Build(cfg)
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range rs.Chains {
		fmt.Printf("%s: %s hook %s, %d rules\n", c.Name, c.Type, c.Hook, len(c.Rules))
	}
	// Output:
	// dstnat: nat hook prerouting, 1 rules
	// prerouting: filter hook prerouting, 2 rules
	// forward: filter hook forward, 9 rules
	// srcnat: nat hook postrouting, 1 rules
}

// Install the ruleset in a network namespace, as "ftpnft install --netns ftp"
// does, and tell apart the errors a program may want to handle.
func ExampleApply() {
	rs, err := nft.Build(nft.DefaultConfig())
	if err != nil {
		log.Fatal(err)
	}
	res, err := nft.Apply(context.Background(), rs, nft.WithNetNS("/var/run/netns/ftp"))
	switch {
	case errors.Is(err, os.ErrPermission):
		log.Fatal("need root or CAP_NET_ADMIN")
	case errors.Is(err, nft.ErrNotOwned):
		log.Fatal("a table named ftpnft exists that ftpnft did not create")
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println("changed:", res.Changed)
}

// Remove ftpnft's table; removing nothing is not an error.
func ExampleRemove() {
	removed, err := nft.Remove(context.Background(), nft.DefaultTable)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("removed:", removed)
}
