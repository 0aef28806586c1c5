package main

import "context"

// grpcUnary makes one unary call per message: Oneway for Send (the call
// returns when the server handler has run), Echo for Request.
type grpcUnary struct{ grpcPair }

var _ System = (*grpcUnary)(nil)

func newGRPCUnary() *grpcUnary { return &grpcUnary{} }

func (s *grpcUnary) Start(ctx context.Context, h Hooks) error { return s.start(h) }

func (s *grpcUnary) Send(ctx context.Context, payload []byte) error {
	var reply []byte
	return s.conn.Invoke(ctx, grpcOneway, payload, &reply)
}

func (s *grpcUnary) Request(ctx context.Context, payload []byte) ([]byte, error) {
	var reply []byte
	err := s.conn.Invoke(ctx, grpcEcho, payload, &reply)
	return reply, err
}

func (s *grpcUnary) Close() error {
	s.close()
	return nil
}
