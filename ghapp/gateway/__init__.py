"""The preview gateway: what stands between a browser and a preview (access now; the proxy, sleep and wake)."""
