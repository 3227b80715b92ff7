// Command testplugin is a plugin built from the SDK for the host's tests.
// Its config section picks a behaviour:
//
//	{"mode": "healthy"}                  run until stopped
//	{"mode": "crash", "after": "200ms"}  Run fails with an error after a while
//	{"mode": "hang", "after": "200ms"}   SIGSTOP itself: stops answering pings
//	{"mode": "exit"}                     exit with status 3 at once
//	{"mode": "runtime"}                  report the Go runtime's memory
//	                                     limit and GC percent as ready message
//	{"mode": "slow", "after": "300ms"}   report ready only after a while
//	                                     (with the argument "manual")
//	{"mode": "never"}                    never report ready ("manual")
//
// With the arguments "group NAME MEMBER..." it serves the members, each a
// copy of this plugin named MEMBER, from one process (sdk.ServeGroup).
// With the argument "v2" it serves plugin protocol version 2 only; with
// "manual" it reports ready itself (sdk.Plugin.ManualReady), so only the
// modes that call Ready become ready. Run as
// a node plugin (RunNode), it reports its node and the host's first gossip
// member list as its ready message and runs until stopped.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/keelson/keelson/plugins/sdk"
)

type config struct {
	Mode  string `json:"mode"`
	After string `json:"after"`
}

func main() {
	p := sdk.Plugin{Name: "testplugin", Kind: sdk.KindController, Version: "0.0.1-test", Run: run, RunNode: runNode}
	if len(os.Args) > 1 && os.Args[1] == "manual" {
		p.ManualReady = true
	}
	if len(os.Args) > 3 && os.Args[1] == "group" {
		var members []sdk.Plugin
		for _, name := range os.Args[3:] {
			m := p
			m.Name = name
			members = append(members, m)
		}
		sdk.ServeGroup(os.Args[2], members)
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "v2" {
		sdk.ServeVersions(p, 2)
		return
	}
	sdk.Serve(p)
}

func run(ctx context.Context, env sdk.Env) error {
	var c config
	if len(env.Config) > 0 {
		if err := json.Unmarshal(env.Config, &c); err != nil {
			return fmt.Errorf("testplugin: config: %w", err)
		}
	}
	after := 200 * time.Millisecond
	if c.After != "" {
		d, err := time.ParseDuration(c.After)
		if err != nil {
			return fmt.Errorf("testplugin: config after: %w", err)
		}
		after = d
	}
	if c.Mode == "exit" {
		os.Exit(3)
	}
	env.Logger.Info("testplugin running", "mode", c.Mode, "term", env.Term)
	switch c.Mode {
	case "never":
		<-ctx.Done()
		return nil
	case "slow":
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(after):
		}
	}
	if c.Mode == "runtime" {
		// What GOMEMLIMIT and GOGC made of the runtime: reading the GC
		// percent means setting it, so set it straight back.
		gogc := debug.SetGCPercent(100)
		debug.SetGCPercent(gogc)
		env.Ready(fmt.Sprintf("memlimit=%d gogc=%d", debug.SetMemoryLimit(-1), gogc))
	} else {
		env.Ready(fmt.Sprintf("term=%d host=%s", env.Term, env.RESTConfig.Host))
	}
	switch c.Mode {
	case "crash":
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(after):
			return errors.New("testplugin crashed on purpose")
		}
	case "hang":
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(after):
			_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		}
	}
	<-ctx.Done()
	return nil
}

func runNode(ctx context.Context, env sdk.Env) error {
	first := make(chan []sdk.Member, 1)
	go func() {
		_ = env.WatchMembers(ctx, func(ms []sdk.Member) {
			select {
			case first <- ms:
			default:
			}
		})
	}()
	select {
	case <-ctx.Done():
		return nil
	case ms := <-first:
		var names []string
		for _, m := range ms {
			names = append(names, m.Name+":"+string(m.Status))
		}
		env.Ready(fmt.Sprintf("node=%s members=%s", env.Node, strings.Join(names, ",")))
	}
	<-ctx.Done()
	return nil
}
