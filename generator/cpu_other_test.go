//go:build !unix

package generator

func processCPU() int64 { return -1 }
