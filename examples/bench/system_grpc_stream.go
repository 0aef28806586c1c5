package main

import (
	"context"
	"sync"

	"google.golang.org/grpc"
)

// grpcStream sends over long-lived gRPC streams, the way a gRPC user would
// for a message bus: each caller takes a stream from a pool for the duration
// of one call, so N concurrent callers use N streams on one HTTP/2
// connection. One-way messages go on client streams (OnewayStream);
// requests on bidirectional streams (EchoStream) whose replies come back in
// order, so no request id is needed.
type grpcStream struct {
	grpcPair
	ctx    context.Context // parent of every stream; cancelled by Close
	cancel context.CancelFunc

	mu     sync.Mutex // guards oneway, echo
	oneway []grpc.ClientStream
	echo   []grpc.ClientStream
}

var _ System = (*grpcStream)(nil)

var (
	onewayStreamDesc = grpc.StreamDesc{StreamName: "OnewayStream", ClientStreams: true}
	echoStreamDesc   = grpc.StreamDesc{StreamName: "EchoStream", ClientStreams: true, ServerStreams: true}
)

func newGRPCStream() *grpcStream { return &grpcStream{} }

func (s *grpcStream) Start(ctx context.Context, h Hooks) error {
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s.start(h)
}

// take returns an idle stream from *pool or opens a new one.
func (s *grpcStream) take(pool *[]grpc.ClientStream, desc *grpc.StreamDesc, method string) (grpc.ClientStream, error) {
	s.mu.Lock()
	if n := len(*pool); n > 0 {
		st := (*pool)[n-1]
		*pool = (*pool)[:n-1]
		s.mu.Unlock()
		return st, nil
	}
	s.mu.Unlock()
	return s.conn.NewStream(s.ctx, desc, method)
}

func (s *grpcStream) give(pool *[]grpc.ClientStream, st grpc.ClientStream) {
	s.mu.Lock()
	*pool = append(*pool, st)
	s.mu.Unlock()
}

func (s *grpcStream) Send(ctx context.Context, payload []byte) error {
	st, err := s.take(&s.oneway, &onewayStreamDesc, grpcOnewayStream)
	if err != nil {
		return err
	}
	if err := st.SendMsg(payload); err != nil {
		return err // a broken stream is dropped, not returned to the pool
	}
	s.give(&s.oneway, st)
	return nil
}

func (s *grpcStream) Request(ctx context.Context, payload []byte) ([]byte, error) {
	st, err := s.take(&s.echo, &echoStreamDesc, grpcEchoStream)
	if err != nil {
		return nil, err
	}
	if err := st.SendMsg(payload); err != nil {
		return nil, err
	}
	var reply []byte
	if err := st.RecvMsg(&reply); err != nil {
		return nil, err
	}
	s.give(&s.echo, st)
	return reply, nil
}

func (s *grpcStream) Close() error {
	if s.cancel == nil {
		return nil
	}
	// Half-close the one-way streams first so that the server reads every
	// message sent before Close (the bench drains before closing anyway).
	s.mu.Lock()
	for _, st := range s.oneway {
		_ = st.CloseSend()
	}
	s.mu.Unlock()
	s.cancel()
	s.close()
	s.cancel = nil
	return nil
}
