package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"github.com/urfave/cli/v2"

	"github.com/kvd-project/kvd/bench/load"
	kvdv1 "github.com/kvd-project/kvd/rpc/gen/kvd/v1"
	"github.com/kvd-project/kvd/rpc/gen/kvd/v1/kvdv1connect"
)

// The RPC ceiling: the same generator and client, against an in-process
// Connect server whose KV/Put and KV/Get do nothing. What it reaches is what
// the RPC stack alone (client, HTTP, server, protobuf) allows on this
// machine; kvd's own figures are read as a fraction of it.

func ceilingCommand(stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "ceiling",
		Usage: "measure the RPC ceiling: the same load against an in-process no-op Connect server on 127.0.0.1",
		Description: "Runs the workload once per --transport against a Connect handler that does nothing\n" +
			"(KV/Put and KV/Get with kvd's generated messages), served like kvd serves (HTTP/1.1 and h2c\n" +
			"on one port) in this process. With --json it prints one JSON object per transport.",
		Flags: append(loadFlags(),
			&cli.StringFlag{Name: "protocol", Value: "connect", Usage: "connect, grpc or grpcweb"},
			&cli.StringFlag{Name: "transport", Value: "http1,h2c", Usage: "comma-separated transports to measure, one run each: http1, h2c, stream (KV/Stream, the client's default; http1 and h2c are unary calls, as bench --unary)"},
			&cli.IntFlag{Name: "compress-min-bytes", Value: -1, Usage: "the server gzips responses of at least this many bytes when the client accepts gzip; -1: Connect's default (every response), as kvd's server does today"},
		),
		Action: func(c *cli.Context) error { return runCeiling(c, stdout, stderr) },
	}
}

func runCeiling(c *cli.Context, stdout, stderr io.Writer) error {
	w, err := workloadFrom(c)
	if err != nil {
		return err
	}
	transports := splitList(c.String("transport"))
	if len(transports) == 0 {
		return errors.New("--transport is empty: give http1, h2c or both")
	}
	opts := make([]dialOptions, len(transports))
	for i, tr := range transports {
		opts[i] = dialOptions{Endpoints: []string{"127.0.0.1:1"}, Protocol: c.String("protocol"),
			Transport: tr, Consistency: "serializable", Timeout: 5 * time.Second, Unary: true}
		if tr == transportStream {
			opts[i].Transport, opts[i].Unary = "", false
		}
		if err := opts[i].validate(); err != nil {
			return err
		}
	}
	srv, err := startNoop(w.ValueSize, c.Int("compress-min-bytes"))
	if err != nil {
		return err
	}
	defer srv.stop()
	var results []*load.Result
	for _, o := range opts {
		o.Endpoints = []string{srv.addr}
		res, err := runCeilingOnce(c.Context, w, o, progressWriter(stderr))
		if err != nil {
			return err
		}
		results = append(results, res)
		if c.Context.Err() != nil {
			break
		}
	}
	return report(c, stdout, "RPC ceiling", results)
}

func runCeilingOnce(ctx context.Context, w load.Workload, o dialOptions, progress io.Writer) (*load.Result, error) {
	targets, closeAll, err := newTargets(o)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	res, err := load.Run(ctx, w, targets, progress)
	if err != nil {
		return nil, err
	}
	res.Mode = "ceiling"
	res.Target = "in-process no-op Connect handler"
	res.Protocol, res.Transport = o.Protocol, o.transport()
	return res, nil
}

// noopServer serves KV/Put and KV/Get doing nothing, on a loopback port.
type noopServer struct {
	addr string
	http *http.Server
	done chan struct{}
}

// startNoop starts the no-op server with the HTTP settings of kvd's
// server: HTTP/1.1 and h2c on one listener, the same timeouts. Put answers
// a revision; Get answers the key with a value of valueSize bytes, so that
// responses weigh what kvd's do. compressMinBytes < 0 keeps Connect's
// default.
func startNoop(valueSize, compressMinBytes int) (*noopServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("ceiling: listen: %w", err)
	}
	mux := noopMux(make([]byte, valueSize), compressMinBytes)
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	s := &noopServer{
		addr: ln.Addr().String(),
		done: make(chan struct{}),
		http: &http.Server{
			Handler:           mux,
			Protocols:         protocols,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       60 * time.Second,
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          log.New(io.Discard, "", 0),
		},
	}
	go func() {
		defer close(s.done)
		s.http.Serve(ln)
	}()
	return s, nil
}

// noopMux answers Put, Get and Stream calls at once, without a node: the
// RPC ceiling.
func noopMux(value []byte, compressMinBytes int) *http.ServeMux {
	var opts []connect.HandlerOption
	if compressMinBytes >= 0 {
		opts = append(opts, connect.WithCompressMinBytes(compressMinBytes))
	}
	mux := http.NewServeMux()
	mux.Handle(kvdv1connect.KVPutProcedure, connect.NewUnaryHandler(kvdv1connect.KVPutProcedure,
		func(context.Context, *connect.Request[kvdv1.PutRequest]) (*connect.Response[kvdv1.PutResponse], error) {
			return connect.NewResponse(&kvdv1.PutResponse{Revision: 1}), nil
		}, opts...))
	mux.Handle(kvdv1connect.KVGetProcedure, connect.NewUnaryHandler(kvdv1connect.KVGetProcedure,
		func(_ context.Context, req *connect.Request[kvdv1.GetRequest]) (*connect.Response[kvdv1.GetResponse], error) {
			kv := &kvdv1.KeyValue{Key: req.Msg.Key, Value: value, CreateRevision: 1, ModRevision: 1, Version: 1}
			return connect.NewResponse(&kvdv1.GetResponse{Kv: kv}), nil
		}, opts...))
	mux.Handle(kvdv1connect.KVStreamProcedure, connect.NewBidiStreamHandler(kvdv1connect.KVStreamProcedure,
		func(_ context.Context, st *connect.BidiStream[kvdv1.StreamRequest, kvdv1.StreamResponse]) error {
			for {
				req, err := st.Receive()
				if err != nil {
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
				resp := &kvdv1.StreamResponse{Results: make([]*kvdv1.StreamResult, len(req.Calls))}
				for i, call := range req.Calls {
					r := &kvdv1.StreamResult{Id: call.Id}
					if g := call.GetGet(); g != nil {
						kv := &kvdv1.KeyValue{Key: g.Key, Value: value, CreateRevision: 1, ModRevision: 1, Version: 1}
						r.Response = &kvdv1.StreamResult_Get{Get: &kvdv1.GetResponse{Kv: kv}}
					} else {
						r.Response = &kvdv1.StreamResult_Put{Put: &kvdv1.PutResponse{Revision: 1}}
					}
					resp.Results[i] = r
				}
				if err := st.Send(resp); err != nil {
					return err
				}
			}
		}, opts...))
	return mux
}

// stop closes the listener and every connection, and waits for Serve.
func (s *noopServer) stop() {
	s.http.Close()
	<-s.done
}
