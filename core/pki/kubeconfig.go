package pki

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubeconfigMode is the permission of written kubeconfigs: they carry a private key.
const KubeconfigMode fs.FileMode = 0o600

// WriteKubeconfig writes a kubeconfig for serverURL that trusts the CA in caFile and
// authenticates with client, embedding the PEM data so the file can be copied to
// another machine. An existing file with identical content is left alone (its
// permissions are still restricted); a different one is replaced atomically.
// It reports whether the file was written.
func WriteKubeconfig(path, serverURL, caFile string, client Pair) (bool, error) {
	data, err := kubeconfigBytes(serverURL, caFile, client)
	if err != nil {
		return false, fmt.Errorf("pki: kubeconfig %s: %w", path, err)
	}
	old, err := os.ReadFile(path)
	switch {
	case err == nil && bytes.Equal(old, data):
		if err := os.Chmod(path, KubeconfigMode); err != nil {
			return false, fmt.Errorf("pki: restrict permissions of %s: %w", path, err)
		}
		return false, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("pki: read existing kubeconfig %s: %w", path, err)
	}
	if err := writeFileAtomic(path, data, KubeconfigMode); err != nil {
		return false, err
	}
	return true, nil
}

func kubeconfigBytes(serverURL, caFile string, client Pair) ([]byte, error) {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA %s: %w", caFile, err)
	}
	crt, err := os.ReadFile(client.CertFile)
	if err != nil {
		return nil, fmt.Errorf("read client certificate %s: %w", client.CertFile, err)
	}
	key, err := os.ReadFile(client.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("read client key %s: %w", client.KeyFile, err)
	}
	cert, err := readCert(client.CertFile)
	if err != nil {
		return nil, err
	}
	user := cert.Subject.CommonName
	const name = "keelson"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: serverURL, CertificateAuthorityData: ca}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: crt, ClientKeyData: key}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: user}
	cfg.CurrentContext = name
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return data, nil
}
