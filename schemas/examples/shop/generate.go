// Package shop is the demo shop's generated event package.
package shop

//go:generate go run github.com/eventgen/eventgen/cmd/eventgen generate shop.yaml
