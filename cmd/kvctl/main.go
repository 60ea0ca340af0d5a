// Command kvctl is the command-line client for kvd. See kvctl --help.
package main

import "os"

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}
