// Package integration holds namespace tests: scenario tests that run a real
// vsftpd server and real curl and lftp clients in throwaway network
// namespaces. They are built only with the tag "netns" and need root:
//
//	go test -tags netns -race ./integration/
package integration
