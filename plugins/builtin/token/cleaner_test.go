package token

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
)

var cleanerNow = time.Date(2027, 6, 1, 10, 0, 0, 0, time.UTC)

func day(daysAgo int) string { return cleanerNow.AddDate(0, 0, -daysAgo).Format(dateFormat) }

// oldToken is a token Secret made two years ago, with the given labels.
func oldToken(name string, labels map[string]string) *corev1.Secret {
	s := tokenSecret(name, "builder", types.UID("s-"+name))
	s.CreationTimestamp = metav1.NewTime(cleanerNow.AddDate(-2, 0, 0))
	s.Labels = labels
	return s
}

func tracking(since string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: trackingConfigMap, Namespace: metav1.NamespaceSystem},
		Data: map[string]string{trackingSinceKey: since}}
}

func TestLegacyTokenCleaner(t *testing.T) {
	usedByPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}, Spec: corev1.PodSpec{
		Volumes: []corev1.Volume{{Name: "t", VolumeSource: corev1.VolumeSource{
			Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "mounted"}}}}}}}},
	}}
	young := oldToken("young", nil)
	young.CreationTimestamp = metav1.NewTime(cleanerNow.AddDate(0, -1, 0))
	for _, tc := range []struct {
		name         string
		secret       *corev1.Secret
		trackedSince string
		want         string // "kept", "invalid" or "deleted"
	}{
		{"unused and never used since tracking began: labelled invalid", oldToken("unused", nil), day(400), "invalid"},
		{"last used over a year ago: labelled invalid", oldToken("stale", map[string]string{lastUsedLabel: day(370)}), day(400), "invalid"},
		{"invalid for over a year: deleted", oldToken("gone", map[string]string{lastUsedLabel: day(800), invalidSinceLabel: day(366)}), day(900), "deleted"},
		{"invalid for less than a year: kept", oldToken("waiting", map[string]string{invalidSinceLabel: day(100)}), day(900), "kept"},
		{"used last month: kept", oldToken("busy", map[string]string{lastUsedLabel: day(30)}), day(400), "kept"},
		{"an unreadable last-used date: kept", oldToken("odd", map[string]string{lastUsedLabel: "last tuesday"}), day(400), "kept"},
		{"tracking began less than a year ago: kept", oldToken("early", nil), day(100), "kept"},
		{"made last month: kept", young, day(400), "kept"},
		{"mounted by a pod: kept", oldToken("mounted", nil), day(400), "kept"},
		{"not listed by its account (made by hand): kept", oldToken("manual", nil), day(400), "kept"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			account := sa("builder", "uid-builder", tc.secret.Name)
			if tc.secret.Name == "manual" {
				account = sa("builder", "uid-builder")
			}
			c, client := fixture(t, account, tc.secret)
			_ = client.Tracker().Add(tracking(tc.trackedSince))
			_ = client.Tracker().Add(usedByPod)
			c.clock, c.cleanUpPeriod = clocktesting.NewFakeClock(cleanerNow), DefaultCleanUpPeriod
			if err := c.cleanTokens(context.Background()); err != nil {
				t.Fatal(err)
			}
			got, err := client.CoreV1().Secrets("ns").Get(context.Background(), tc.secret.Name, metav1.GetOptions{})
			state := "kept"
			switch {
			case apierrors.IsNotFound(err):
				state = "deleted"
			case err != nil:
				t.Fatal(err)
			case got.Labels[invalidSinceLabel] != tc.secret.Labels[invalidSinceLabel]:
				state = "invalid"
				if got.Labels[invalidSinceLabel] != day(0) {
					t.Errorf("invalid-since label %q, want today %q", got.Labels[invalidSinceLabel], day(0))
				}
			}
			if state != tc.want {
				t.Errorf("token %s, want %s", state, tc.want)
			}
		})
	}
}

func TestLegacyTokenCleanerNeedsTracking(t *testing.T) {
	c, client := fixture(t, sa("builder", "uid-builder", "t"), oldToken("t", nil))
	c.clock, c.cleanUpPeriod = clocktesting.NewFakeClock(cleanerNow), DefaultCleanUpPeriod
	if err := c.cleanTokens(context.Background()); err == nil {
		t.Error("no tracking ConfigMap: want an error, the cleaner cannot know how old usage dates are")
	}
	_ = client.Tracker().Add(tracking("soon"))
	if err := c.cleanTokens(context.Background()); err == nil {
		t.Error("an unreadable tracking date: want an error")
	}
	if _, err := client.CoreV1().Secrets("ns").Get(context.Background(), "t", metav1.GetOptions{}); err != nil {
		t.Errorf("token touched without tracking: %v", err)
	}
}
