package nfttest_test

import (
	"context"
	"fmt"

	"github.com/ftpnft/ftpnft/nft"
	"github.com/ftpnft/ftpnft/nft/nfttest"
)

// Install against the fake, read the table back, and see what the kernel
// would hold: no root needed.
func Example() {
	ctx := context.Background()
	fake := nfttest.New()
	cfg := nft.DefaultConfig()
	cfg.Allow = []nft.Service{{Protocol: "tcp", Port: 22}}
	rs, err := nft.Build(cfg)
	if err != nil {
		panic(err)
	}
	res, err := nft.Apply(ctx, rs, fake.Option())
	if err != nil {
		panic(err)
	}
	st, err := nft.ReadStatus(ctx, rs, fake.Option())
	if err != nil {
		panic(err)
	}
	fmt.Println("changed:", res.Changed, "matches:", st.Matches, "commits:", fake.Commits())
	fmt.Print(fake.Dump())
	// Output:
	// changed: true matches: true commits: 1
	// table inet ftpnft {
	// 	ct helper ftp-helper {
	// 		type "ftp" protocol tcp
	// 		l3proto inet
	// 	}
	//
	// 	set ftp-ban4 {
	// 		type ipv4_addr
	// 		flags interval,timeout
	// 	}
	//
	// 	set ftp-ban6 {
	// 		type ipv6_addr
	// 		flags interval,timeout
	// 	}
	//
	// 	chain prerouting {
	// 		type filter hook prerouting priority filter; policy accept;
	// 		tcp dport 21 ct state new ct helper set "ftp-helper" counter comment "ftpnft: assign ftp helper port 21"
	// 	}
	//
	// 	chain input {
	// 		type filter hook input priority filter; policy drop;
	// 		iifname "lo" accept comment "ftpnft: loopback"
	// 		ip saddr @ftp-ban4 counter drop comment "ftpnft: banned source ipv4"
	// 		ip6 saddr @ftp-ban6 counter drop comment "ftpnft: banned source ipv6"
	// 		ct state invalid counter drop comment "ftpnft: drop invalid"
	// 		ct state established counter accept comment "ftpnft: established"
	// 		ct state related ct helper "ftp" tcp dport 1024-65535 counter accept comment "ftpnft: related ftp data"
	// 		meta l4proto icmp ct state related counter accept comment "ftpnft: related icmp errors"
	// 		meta l4proto ipv6-icmp ct state related counter accept comment "ftpnft: related icmpv6 errors"
	// 		icmpv6 type 133-136 accept comment "ftpnft: ipv6 neighbour discovery"
	// 		tcp dport 21 ct state new counter accept comment "ftpnft: ftp control port 21"
	// 		tcp dport 22 counter accept comment "ftpnft: allow tcp/22"
	// 	}
	// }
}
