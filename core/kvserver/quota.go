package kvserver

import (
	"context"
	"fmt"
	"time"

	"github.com/keelson/keelson/fsm"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// checkQuota is etcd's quota check in front of a proposal that adds cost
// bytes: when the local store would grow past QuotaBytes, this server raises
// the NOSPACE alarm (a raft command, so every server learns it) and refuses
// the request with etcd's "mvcc: database space exceeded". The check uses
// this server's own view and quota only to decide whether to raise the
// alarm; what is refused once it is raised is decided inside the state
// machine from the replicated alarm (fsm/quota.go), so servers never
// disagree about which writes applied.
func (s *Server) checkQuota(ctx context.Context, cost int64) error {
	if cost == 0 || s.cfg.QuotaBytes <= 0 {
		return nil
	}
	v := s.store.View()
	if v.Size()+cost <= s.cfg.QuotaBytes {
		return nil
	}
	for _, a := range v.Alarms() {
		if a.MemberID == s.cfg.MemberID && a.Type == pb.AlarmType_NOSPACE {
			return rpctypes.ErrGRPCNoSpace
		}
	}
	s.log.Warn("store quota exceeded: raising the NOSPACE alarm; writes that grow the store are refused until it is disarmed",
		"size_bytes", v.Size(), "request_bytes", cost, "quota_bytes", s.cfg.QuotaBytes)
	// The request's own deadline may be nearly spent; the alarm must still
	// be raised.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	req := &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: s.cfg.MemberID, Alarm: pb.AlarmType_NOSPACE}
	if _, err := s.propose(actx, fsm.CmdAlarm, req); err != nil {
		s.log.Warn("raising the NOSPACE alarm", "err", err)
	}
	return rpctypes.ErrGRPCNoSpace
}

// Alarm lists, raises or clears alarms (etcdctl alarm list / disarm). The
// alarms live in the state machine, so every server answers the same.
func (s *Server) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	switch r.Action {
	case pb.AlarmRequest_GET:
		v, err := s.readView(ctx, false)
		if err != nil {
			return nil, err
		}
		resp := &pb.AlarmResponse{Header: s.header(v.Rev())}
		for _, a := range v.Alarms() {
			if r.Alarm == pb.AlarmType_NONE || r.Alarm == a.Type {
				resp.Alarms = append(resp.Alarms, &pb.AlarmMember{MemberID: a.MemberID, Alarm: a.Type})
			}
		}
		return resp, nil
	case pb.AlarmRequest_ACTIVATE, pb.AlarmRequest_DEACTIVATE:
		if r.Alarm != pb.AlarmType_NOSPACE {
			return nil, status.Errorf(codes.InvalidArgument, "alarm %s: only NOSPACE is defined", r.Alarm)
		}
		res, err := s.propose(ctx, fsm.CmdAlarm, r)
		if err != nil {
			return nil, err
		}
		if r.Action == pb.AlarmRequest_DEACTIVATE && len(res.Alarm.Alarms) > 0 {
			s.log.Info("alarm disarmed", "member", fmt.Sprintf("%x", r.MemberID), "alarm", r.Alarm.String())
		}
		res.Alarm.Header = s.header(res.Rev)
		return res.Alarm, nil
	}
	return nil, status.Errorf(codes.InvalidArgument, "alarm action %s is not defined", r.Action)
}

// alarmStrings renders alarms as etcd's Status does.
func alarmStrings(alarms []fsm.Alarm) []string {
	out := make([]string, 0, len(alarms))
	for _, a := range alarms {
		out = append(out, (&pb.AlarmMember{MemberID: a.MemberID, Alarm: a.Type}).String())
	}
	return out
}
