// ftpnft makes FTP work through an nftables firewall: it installs a
// table with the kernel's FTP conntrack helper and a policy that admits only
// the data connections the helper expected. Run "ftpnft help" for usage.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
