// Package nlio reads netlink answers the way both of ftpnft's kernel
// packages, nft and conntrack, need them: in large raw reads, one message at
// a time, without keeping what the caller does not keep.
//
// The kernel fills each part of a dump up to the largest read it has seen on
// the socket (at most 32 KiB). github.com/mdlayher/netlink reads with a
// page-sized buffer and a peek before every read, so a dump of thousands of
// objects arrives in hundreds of 4 KiB parts and twice as many system calls.
// [Receive] reads 64 KiB at a time: 13 parts instead of 51 for a set of
// 10,000 networks, and 29 reads instead of 448 system calls for 4,000
// expectations. [EachAttr] walks the attributes of the messages read.
package nlio
