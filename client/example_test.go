package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strconv"
	"time"

	"github.com/kvd-project/kvd/client"
)

// Example_basic shows an application using kvd: connect, write, read,
// increment a counter with a compare-and-swap loop, and scan a prefix.
// It runs against three real kvd servers started in this process.
func Example_basic() {
	endpoints, stop := exampleCluster() // an app lists its cluster's API addresses, e.g. "10.0.0.1:7070"
	defer stop()

	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err) // the message names the bad setting
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	put, err := c.Put(ctx, []byte("greeting"), []byte("hello"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("written:", put.Revision > 0)

	kv, err := c.Get(ctx, []byte("greeting"))
	switch {
	case errors.Is(err, client.ErrNotFound):
		fmt.Println("no greeting")
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Printf("%s (mod revision = put revision: %v)\n", kv.Value, kv.ModRevision == put.Revision)
	}

	// Increment a counter: read, compute, write only if nobody wrote in
	// between; on a conflict, read again.
	for {
		var n int
		var rev uint64 // 0: create only if absent
		kv, err := c.Get(ctx, []byte("counter"))
		switch {
		case errors.Is(err, client.ErrNotFound):
		case err != nil:
			log.Fatal(err)
		default:
			if n, err = strconv.Atoi(string(kv.Value)); err != nil {
				log.Fatal(err)
			}
			rev = kv.ModRevision
		}
		_, err = c.Put(ctx, []byte("counter"), []byte(strconv.Itoa(n+1)), client.IfModRevision(rev))
		if errors.Is(err, client.ErrCompareFailed) {
			continue // someone else incremented it
		}
		if client.OutcomeUnknown(err) {
			// The increment may have been applied: re-read before deciding.
			// A blind retry could count twice.
			log.Fatal(err)
		}
		if err != nil {
			log.Fatal(err)
		}
		break
	}

	for _, name := range []string{"ada", "alan", "grace"} {
		if _, err := c.Put(ctx, []byte("user/"+name), []byte("engineer")); err != nil {
			log.Fatal(err)
		}
	}
	kv, err = c.Get(ctx, []byte("counter"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("counter = %s\n", kv.Value)

	kvs, err := c.Scan(ctx, []byte("user/"), 100)
	if err != nil {
		log.Fatal(err)
	}
	for _, kv := range kvs {
		fmt.Printf("%s = %s\n", kv.Key, kv.Value)
	}
	// Output:
	// written: true
	// hello (mod revision = put revision: true)
	// counter = 1
	// user/ada = engineer
	// user/alan = engineer
	// user/grace = engineer
}
