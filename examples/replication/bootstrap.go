package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/internode/internode/cluster"
	"github.com/internode/internode/transport"
)

// Verbs of bootstrap: the joiner's request, and the data file a peer sends
// back with SendFile. Change them if they clash with your own verbs.
const (
	BootstrapVerb transport.Verb = 201
	DataFileVerb  transport.Verb = 202
)

// ServeBootstrap makes t answer joining nodes' bootstrap requests: it
// writes store's data file (Store.WriteTo) to a temporary file in dir (""
// means os.TempDir()) and sends it to the joiner with SendFile, which
// moves the bytes with sendfile(2) on a connection of its own, then
// acknowledges the request. Register it on every node.
func ServeBootstrap(t *transport.Transport, store *Store, dir string) {
	t.Handle(BootstrapVerb, transport.HandlerFunc(func(ctx context.Context, m *transport.Message) ([]byte, error) {
		f, err := os.CreateTemp(dir, "bootstrap-*.data")
		if err != nil {
			return nil, err
		}
		defer os.Remove(f.Name())
		defer f.Close()
		size, err := store.WriteTo(f)
		if err != nil {
			return nil, err
		}
		// The request's deadline bounds the transfer too.
		if _, err := t.SendFile(ctx, m.From, DataFileVerb, f, 0, size); err != nil {
			return nil, fmt.Errorf("sending the data file: %w", err)
		}
		return nil, nil
	}))
}

// Pulled is what Bootstrap got from one peer.
type Pulled struct {
	Peer    cluster.NodeID
	Bytes   int64 // the data file's size
	Applied int   // writes loaded into the store (newer than what it held)
	Elapsed time.Duration
	Err     error
}

// Bootstrap fills store, on a joining node, with the data files of peers
// (each a peer running ServeBootstrap; between them they must hold every
// key keep accepts, see the package doc; two copies of a key give it a
// second chance):
// it asks each, concurrently, with a Request on BootstrapVerb, and the peer
// answers by sending its data file on DataFileVerb, which is loaded into
// store before the peer acknowledges. keep, if set, chooses the keys to
// load (those this node will own); dir holds the files while they load.
//
// It returns once every peer answered, with one Pulled per peer and their
// errors joined. Run one Bootstrap at a time on a transport: it handles
// DataFileVerb while it runs, and not after.
func Bootstrap(ctx context.Context, t *transport.Transport, store *Store, peers []cluster.NodeID,
	keep func(key string) bool, dir string) ([]Pulled, error) {
	var mu sync.Mutex
	loaded := map[cluster.NodeID]Pulled{}
	t.HandleFile(DataFileVerb, transport.FileHandlerFunc(func(ctx context.Context, ft *transport.FileTransfer) error {
		applied, err := receiveDataFile(ft, store, keep, dir)
		if err != nil {
			return err
		}
		mu.Lock()
		loaded[ft.From] = Pulled{Bytes: ft.Length, Applied: applied}
		mu.Unlock()
		return nil
	}))
	defer t.HandleFile(DataFileVerb, nil)

	pulled := make([]Pulled, len(peers))
	var wg sync.WaitGroup
	for i, peer := range peers {
		wg.Go(func() {
			start := time.Now()
			_, err := t.Request(ctx, peer, BootstrapVerb, nil)
			mu.Lock()
			pulled[i] = loaded[peer]
			mu.Unlock()
			pulled[i].Peer, pulled[i].Elapsed, pulled[i].Err = peer, time.Since(start), err
		})
	}
	wg.Wait()
	var errs []error
	for _, p := range pulled {
		if p.Err != nil {
			errs = append(errs, fmt.Errorf("bootstrap from %s: %w", p.Peer, p.Err))
		}
	}
	return pulled, errors.Join(errs...)
}

// receiveDataFile lets the kernel splice an incoming data file into a
// temporary file, then loads it.
func receiveDataFile(ft *transport.FileTransfer, store *Store, keep func(string) bool, dir string) (int, error) {
	f, err := os.CreateTemp(dir, "incoming-*.data") // read-write: ReceiveTo verifies from the file
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := ft.ReceiveTo(f); err != nil {
		return 0, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	_, applied, err := store.Load(f, keep)
	return applied, err
}
