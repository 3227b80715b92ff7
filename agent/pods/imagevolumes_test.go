package pods

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/keelson/keelson/agent/runtime"
	"github.com/keelson/keelson/agent/volumes"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
)

// fakeImages is a registry and an image store: present images, and pulls
// that fail for the images in failing.
type fakeImages struct {
	present map[string]bool
	failing map[string]bool
	pulls   []string
}

func (f *fakeImages) HasImage(_ context.Context, ref string) (bool, error) {
	return f.present[ref], nil
}

func (f *fakeImages) Pull(_ context.Context, ref string, _ runtime.Credentials) (int64, error) {
	f.pulls = append(f.pulls, ref)
	if f.failing[ref] {
		return 0, errors.New("not found")
	}
	f.present[ref] = true
	return 1, nil
}

// fakeViews mounts nothing: it says where a view would be, or fails.
type fakeViews struct {
	mounted map[string]string // path -> image
	fail    error
}

func (f *fakeViews) MountImageView(_ context.Context, _, ref, dir string) (string, error) {
	if f.fail != nil {
		return "", f.fail
	}
	p := filepath.Join(dir, "view")
	f.mounted[p] = ref
	return p, nil
}

func (f *fakeViews) RemoveImageViews(context.Context, string) error { return nil }

const kitten = "registry.example/e2e-test-images/kitten:1.8"

func imageVolumeManager(t *testing.T, imgs *fakeImages, views *fakeViews) (*Manager, *record.FakeRecorder, *clockwork.FakeClock) {
	t.Helper()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	rec := record.NewFakeRecorder(100)
	m := New(Options{Node: fakeNode{}, Clock: clock, Recorder: rec, SyncInterval: time.Minute,
		Volumes: volumes.New(volumes.Options{Images: views, Clock: clock})})
	m.images = imgs
	return m, rec, clock
}

func imageVolumePod(policy v1.PullPolicy) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-1"},
		Spec: v1.PodSpec{
			Volumes: []v1.Volume{{Name: "volume", VolumeSource: v1.VolumeSource{Image: &v1.ImageVolumeSource{Reference: kitten, PullPolicy: policy}}}},
			Containers: []v1.Container{
				{Name: "reader", VolumeMounts: []v1.VolumeMount{{Name: "volume", MountPath: "/volume"}}},
				{Name: "other"},
			},
		},
	}
}

func drain(rec *record.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

// The volume's pull policy decides the pull, as for a container's image:
// Always pulls on every sync that starts containers, IfNotPresent only
// when absent, Never never (and waits when absent).
func TestImageVolumePullPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy  v1.PullPolicy
		present bool
		pulls   int    // over two syncs
		reason  string // the mounting container's waiting reason, "" to start
	}{
		{v1.PullAlways, true, 2, ""},
		{v1.PullAlways, false, 2, ""},
		{v1.PullIfNotPresent, true, 0, ""},
		{v1.PullIfNotPresent, false, 1, ""},
		{v1.PullNever, true, 0, ""},
		{v1.PullNever, false, 0, reasonErrImageNeverPull},
	} {
		t.Run(string(tc.policy)+"/present="+map[bool]string{true: "yes", false: "no"}[tc.present], func(t *testing.T) {
			imgs := &fakeImages{present: map[string]bool{kitten: tc.present}}
			views := &fakeViews{mounted: map[string]string{}}
			m, _, _ := imageVolumeManager(t, imgs, views)
			pod := imageVolumePod(tc.policy)
			sb := &sandbox{dir: t.TempDir()}
			for range 2 {
				sb.images = m.ensureImageVolumes(context.Background(), pod, sb)
			}
			if len(imgs.pulls) != tc.pulls {
				t.Errorf("%d pulls, want %d", len(imgs.pulls), tc.pulls)
			}
			waiting, _ := m.imageVolumesWait(pod, &pod.Spec.Containers[0], sb.images)
			switch {
			case tc.reason == "" && waiting != nil:
				t.Fatalf("the mounting container waits: %+v", waiting)
			case tc.reason != "" && (waiting == nil || waiting.Reason != tc.reason):
				t.Fatalf("the mounting container's waiting state %+v, want %s", waiting, tc.reason)
			case tc.reason == "":
				vol, ok := imageVolumeMount(sb.images, "volume")
				if !ok || views.mounted[vol.Path] != kitten || !vol.ReadOnly {
					t.Fatalf("volume %+v (ready %v), views %v: want the read-only view of %s", vol, ok, views.mounted, kitten)
				}
			}
		})
	}
}

// A volume whose image fails to pull makes the containers mounting it wait
// with ErrImagePull, then ImagePullBackOff until the back-off ends, each
// time with a warning naming the volume and the image; a container that
// does not mount it is not held back.
func TestImageVolumePullFailure(t *testing.T) {
	imgs := &fakeImages{present: map[string]bool{}, failing: map[string]bool{kitten: true}}
	m, rec, clock := imageVolumeManager(t, imgs, &fakeViews{mounted: map[string]string{}})
	pod := imageVolumePod(v1.PullAlways)
	sb := &sandbox{dir: t.TempDir()}
	reader, other := &pod.Spec.Containers[0], &pod.Spec.Containers[1]

	sb.images = m.ensureImageVolumes(context.Background(), pod, sb)
	waiting, retry := m.imageVolumesWait(pod, reader, sb.images)
	if waiting == nil || waiting.Reason != reasonErrImagePull || !strings.Contains(waiting.Message, kitten) || retry <= 0 {
		t.Fatalf("after a failed pull: %+v, retry %s; want ErrImagePull naming the image and a retry", waiting, retry)
	}
	if w, _ := m.imageVolumesWait(pod, other, sb.images); w != nil {
		t.Fatalf("a container without the volume waits: %+v", w)
	}
	events := strings.Join(drain(rec), "\n")
	for _, want := range []string{
		`Normal Pulling Pulling image "` + kitten + `"`,
		`Warning Failed Failed to pull image "` + kitten + `"`,
		`Warning Failed Error: image volume "volume" (image "` + kitten + `") of container reader: Failed to pull image`,
	} {
		if !strings.Contains(events, want) {
			t.Errorf("events lack %q:\n%s", want, events)
		}
	}

	sb.images = m.ensureImageVolumes(context.Background(), pod, sb)
	waiting, _ = m.imageVolumesWait(pod, reader, sb.images)
	if waiting == nil || waiting.Reason != reasonImagePullBackOff || len(imgs.pulls) != 1 {
		t.Fatalf("within the back-off: %+v after %d pulls; want ImagePullBackOff and no new pull", waiting, len(imgs.pulls))
	}
	if events := strings.Join(drain(rec), "\n"); !strings.Contains(events, `Normal BackOff Back-off pulling image "`+kitten+`"`) {
		t.Errorf("no back-off event:\n%s", events)
	}

	clock.Advance(retry)
	imgs.failing = nil
	sb.images = m.ensureImageVolumes(context.Background(), pod, sb)
	if w, _ := m.imageVolumesWait(pod, reader, sb.images); w != nil || len(imgs.pulls) != 2 {
		t.Fatalf("after the back-off, with the image back: %+v after %d pulls; want the volume ready", w, len(imgs.pulls))
	}
}

// A view that cannot be mounted is the runtime's create error, as the CRI
// reports it.
func TestImageVolumeMountFailure(t *testing.T) {
	imgs := &fakeImages{present: map[string]bool{kitten: true}}
	m, _, _ := imageVolumeManager(t, imgs, &fakeViews{fail: errors.New("snapshot view: no space left on device")})
	pod := imageVolumePod(v1.PullIfNotPresent)
	sb := &sandbox{dir: t.TempDir()}
	sb.images = m.ensureImageVolumes(context.Background(), pod, sb)
	waiting, _ := m.imageVolumesWait(pod, &pod.Spec.Containers[0], sb.images)
	if waiting == nil || waiting.Reason != reasonCreateContainerError ||
		!strings.HasPrefix(waiting.Message, imageVolumeMountFailed+": ") || !strings.Contains(waiting.Message, "no space left") {
		t.Fatalf("waiting %+v: want CreateContainerError with the mount's error", waiting)
	}
}

// A container mounting an image volume gets its view read-only, even when
// its volumeMount does not ask for it.
func TestImageVolumeMountedReadOnly(t *testing.T) {
	imgs := &fakeImages{present: map[string]bool{kitten: true}}
	views := &fakeViews{mounted: map[string]string{}}
	m, _, _ := imageVolumeManager(t, imgs, views)
	pod := imageVolumePod(v1.PullIfNotPresent)
	sb := &sandbox{dir: t.TempDir(), volumes: map[string]volumes.Volume{}}
	sb.images = m.ensureImageVolumes(context.Background(), pod, sb)
	mounts, err := m.mounts(pod, &pod.Spec.Containers[0], sb, nil)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, mt := range mounts {
		if mt.Destination == "/volume" {
			found = true
			if !mt.ReadOnly || views.mounted[mt.Source] != kitten {
				t.Errorf("mount %+v: want the view of %s, read-only", mt, kitten)
			}
		}
	}
	if !found {
		t.Fatalf("no mount at /volume in %+v", mounts)
	}
}
