//go:build !race

package kafka

const raceBuild = false
