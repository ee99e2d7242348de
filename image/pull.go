package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"syscall"

	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/shortnames"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/types"

	dockerarchive "go.podman.io/image/v5/docker/archive"

	// Transports a pull may name.
	_ "go.podman.io/image/v5/oci/archive"
	_ "go.podman.io/image/v5/oci/layout"
)

// PullOptions tune a pull.
type PullOptions struct {
	// SkipTLSVerify talks to the registry without verifying its
	// certificate, and over plain HTTP when it does not speak HTTPS
	// (urun pull --tls-verify=false).
	SkipTLSVerify bool
	// OS, Arch and Variant choose the instance of a multi-arch index;
	// empty means the host's.
	OS, Arch, Variant string
	// Report receives progress: a bar per layer when it is a terminal,
	// one line per blob otherwise; nil is silent.
	Report io.Writer
	// Name is the name given to an image from a source without one (an
	// oci: layout without a ref name, an untagged docker-archive).
	Name string
}

// PullPolicy says when Get pulls.
type PullPolicy string

// Pull policies, as podman's --pull.
const (
	PullMissing PullPolicy = "missing"
	PullAlways  PullPolicy = "always"
	PullNever   PullPolicy = "never"
)

// ParsePullPolicy checks a --pull value.
func ParsePullPolicy(s string) (PullPolicy, error) {
	switch p := PullPolicy(s); p {
	case PullMissing, PullAlways, PullNever:
		return p, nil
	case "":
		return PullMissing, nil
	}
	return "", fmt.Errorf("bad pull policy %q: use missing, always or never", s)
}

// Get returns the image called name, pulling it as policy says: missing
// pulls only when Resolve finds nothing, always pulls every time, never
// never pulls.
func (s *Store) Get(ctx context.Context, name string, policy PullPolicy, o PullOptions) (*Image, error) {
	if policy != PullAlways {
		img, err := s.Resolve(name)
		if err == nil || !errors.Is(err, ErrNotFound) || policy == PullNever {
			return img, err
		}
	}
	return s.Pull(ctx, name, o)
}

// Pull copies an image into the store and returns it. ref is a docker
// reference, short ("busybox") or qualified
// ("quay.io/podman/hello:latest", "registry/x@sha256:…"), resolved as
// podman does, or TRANSPORT:REFERENCE for another source: docker://,
// oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:REF].
// Digests are verified; a multi-arch index is resolved to the platform
// of o (the host's by default). An interrupted pull stores no image;
// complete layers it stored are reused by the next pull.
func (s *Store) Pull(ctx context.Context, ref string, o PullOptions) (*Image, error) {
	if ref == "" {
		return nil, fmt.Errorf("%w: empty image reference", ErrBadReference)
	}
	if err := s.ensureTempDir(); err != nil {
		return nil, err
	}
	sys := s.pullContext(o)
	if tr, within, ok := strings.Cut(ref, ":"); ok {
		if t := transports.Get(tr); t != nil && (tr != "docker" || strings.HasPrefix(within, "//")) {
			src, err := t.ParseReference(within)
			if err != nil {
				return nil, fmt.Errorf("%w: %q: %w", ErrBadReference, ref, err)
			}
			return s.pullRef(ctx, sys, src, o)
		}
	}
	resolved, err := shortnames.Resolve(sys, ref)
	if err != nil {
		return nil, fmt.Errorf("resolve %q: %w (use a fully qualified name such as docker.io/library/%s, or add an alias to registries.conf)", ref, err, ref)
	}
	var pullErrs []error
	for _, c := range resolved.PullCandidates {
		src, err := docker.NewReference(c.Value)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %w", ErrBadReference, c.Value, err)
		}
		img, err := s.pullRef(ctx, sys, src, o)
		if err == nil {
			if err := c.Record(); err != nil {
				s.log.Warn("recording short-name alias", "name", ref, "err", err)
			}
			return img, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		pullErrs = append(pullErrs, err)
	}
	if len(pullErrs) == 1 {
		return nil, pullErrs[0]
	}
	return nil, resolved.FormatPullErrors(pullErrs)
}

func (s *Store) pullContext(o PullOptions) *types.SystemContext {
	sys := s.systemContext()
	if o.SkipTLSVerify {
		sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
	}
	sys.OSChoice, sys.ArchitectureChoice, sys.VariantChoice = o.OS, o.Arch, o.Variant
	return sys
}

// pullRef copies src into the store under its own name, o.Name, or (for a
// source without either) its ID only.
func (s *Store) pullRef(ctx context.Context, sys *types.SystemContext, src types.ImageReference, o PullOptions) (*Image, error) {
	named := src.DockerReference()
	if named == nil && o.Name != "" {
		n, err := NormalizeName(o.Name)
		if err != nil {
			return nil, err
		}
		named = n
	}
	var extra []string
	if named == nil && src.Transport().Name() == "docker-archive" {
		tags, err := archiveTags(sys, src)
		if err != nil {
			return nil, fmt.Errorf("pull %s: %w", transports.ImageName(src), err)
		}
		for _, t := range tags {
			if n, err := reference.ParseNormalizedNamed(t); err == nil {
				if named == nil {
					named = n
				} else {
					extra = append(extra, reference.TagNameOnly(n).String())
				}
			}
		}
	}
	if named != nil {
		named = reference.TagNameOnly(named)
	}
	img, err := s.copyIn(ctx, sys, src, named, o.Report)
	if err == nil && len(extra) > 0 {
		if err := s.store.AddNames(img.ID, extra); err != nil {
			return nil, fmt.Errorf("pull %s: name image %s: %w", transports.ImageName(src), img.ShortID(), err)
		}
		img.Names = append(img.Names, extra...)
	}
	if err != nil {
		if m := digestMismatch.FindStringSubmatch(err.Error()); m != nil {
			return nil, fmt.Errorf("pull %s: layer %s%s does not match its digest (the registry or something between sent corrupt data); nothing was stored: %w", transports.ImageName(src), m[1], registryOf(src), err)
		}
		if h := pullHint(err); h != "" {
			return nil, fmt.Errorf("pull %s%s: %w (%s)", transports.ImageName(src), registryOf(src), err, h)
		}
		return nil, fmt.Errorf("pull %s%s: %w", transports.ImageName(src), registryOf(src), err)
	}
	return img, nil
}

// pullHint says what to do about a failed pull, when the cause is known.
func pullHint(err error) string {
	msg := err.Error()
	var unauth docker.ErrUnauthorizedForCredentials
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(msg, s) {
				return true
			}
		}
		return false
	}
	switch {
	case errors.Is(err, syscall.ENOSPC) || has("no space left on device"):
		return "the store's file system is full: free space (urun rmi) or move the graph root"
	case errors.As(err, &unauth) || has("unauthorized", "denied", "authentication required"):
		return "the registry refused access: check the name, or log in (podman login writes $XDG_RUNTIME_DIR/containers/auth.json)"
	case has("server gave HTTP response to HTTPS client"):
		return "the registry speaks plain HTTP: use --tls-verify=false, or insecure = true for it in registries.conf"
	case has("x509:", "tls: "):
		return "TLS verification failed: install the registry's CA certificate, or use --tls-verify=false on a network you trust"
	case errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) || has("no such host", "i/o timeout", "server misbehaving"):
		return "registry unreachable: check its name and port, the network, and proxy settings (HTTPS_PROXY)"
	case has("no image found in manifest list", "no image found in image index"):
		return "the image has no instance for this platform: choose one with --platform OS/ARCH"
	case has("manifest unknown", "name unknown"):
		return "the registry has no such image or tag: check the name and tag"
	}
	return ""
}

// digestMismatch matches containers/image's (untyped) digest error.
var digestMismatch = regexp.MustCompile(`Digest did not match, expected (sha256:[0-9a-f]{64})`)

// archiveTags are the tags a docker-archive gives the image src points at
// (the podman way of naming an image pulled from such an archive).
func archiveTags(sys *types.SystemContext, src types.ImageReference) ([]string, error) {
	r, ref, err := dockerarchive.NewReaderForReference(sys, src)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.ManifestTagsForReference(ref)
}

// registryOf names the registry of a docker:// source for error messages.
func registryOf(src types.ImageReference) string {
	if src.Transport().Name() != "docker" || src.DockerReference() == nil {
		return ""
	}
	return " from registry " + reference.Domain(src.DockerReference())
}

// copyIn copies src into the store, naming the result named (nil: by ID
// only), and returns the stored image.
func (s *Store) copyIn(ctx context.Context, sys *types.SystemContext, src types.ImageReference, named reference.Named, report io.Writer) (*Image, error) {
	id := ""
	if named == nil {
		cfg, err := configDigest(ctx, sys, src)
		if err != nil {
			return nil, err
		}
		id = cfg
	}
	dest, err := istorage.Transport.NewStoreReference(s.store, named, id)
	if err != nil {
		return nil, fmt.Errorf("store reference: %w", err)
	}
	pc, err := s.policyContext(sys)
	if err != nil {
		return nil, err
	}
	defer pc.Destroy()
	_, err = copy.Image(ctx, pc, dest, src, &copy.Options{
		ReportWriter:       report,
		SourceCtx:          sys,
		DestinationCtx:     sys,
		ImageListSelection: copy.CopySystemImage,
	})
	if err != nil {
		return nil, err
	}
	_, img, err := istorage.ResolveReference(dest)
	if err != nil {
		return nil, fmt.Errorf("find the stored image: %w", err)
	}
	return fromStorage(img), nil
}

// configDigest is the image ID src will get: its config's digest (of the
// host platform's instance for an index).
func configDigest(ctx context.Context, sys *types.SystemContext, src types.ImageReference) (string, error) {
	is, err := src.NewImageSource(ctx, sys)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", transports.ImageName(src), err)
	}
	defer is.Close()
	raw, mt, err := is.GetManifest(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("read manifest of %s: %w", transports.ImageName(src), err)
	}
	var inst *digest.Digest
	if manifest.MIMETypeIsMultiImage(mt) {
		list, err := manifest.ListFromBlob(raw, mt)
		if err != nil {
			return "", fmt.Errorf("parse index of %s: %w", transports.ImageName(src), err)
		}
		d, err := list.ChooseInstance(sys)
		if err != nil {
			return "", fmt.Errorf("%s: %w", transports.ImageName(src), err)
		}
		inst = &d
	}
	img, err := image.FromUnparsedImage(ctx, sys, image.UnparsedInstance(is, inst))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", transports.ImageName(src), err)
	}
	return img.ConfigInfo().Digest.Encoded(), nil
}
