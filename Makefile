# napari-cellseg: the two commands.
#   make test   create .venv if missing, then run the whole suite headless (Xvfb)
#   make run    create .venv if missing, then open napari with our dock and a sample
#               (headless without a display: runs the demo pipeline into demo-output/)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cellseg-installed
# pip prints a warning per package for the machine's file:// indexes; hide only those lines.
PIP := $(PY) -m pip install -q --disable-pip-version-check
QUIET_PIP := 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2 || true)
# Debian packages napari's Qt needs to draw under Xvfb.
APT_PACKAGES := xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxkbcommon-x11-0 libxcb-cursor0 \
	libgl1 libegl1 libdbus-1-3 libfontconfig1
export HF_HUB_OFFLINE := 1

.PHONY: test run lint venv system-deps screenshot clean cellpose-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "== installing torch 2.14.1 / torchvision 0.29.1 and napari-cellseg into $(VENV)"
	$(PIP) torch==2.14.1 torchvision==0.29.1 $(QUIET_PIP)
	$(PIP) -e ".[testing]" $(QUIET_PIP)
	@touch $(STAMP)

# Cellpose 3 for bench/speed_vs_cellpose.py only (it pins numpy<2.1): its own venv, which
# borrows torch from $(VENV) through a .pth file (no second torch download).
cellpose-venv: $(STAMP)
	@test -x .venv-cellpose/bin/python || $(PYTHON) -m venv .venv-cellpose
	@$(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
		> "$$(.venv-cellpose/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/zz-cellseg-venv.pth"
	.venv-cellpose/bin/python -m pip install -q --disable-pip-version-check cellpose==3.1.1.2 $(QUIET_PIP)

system-deps:
	@if ! command -v Xvfb >/dev/null || ! ldconfig -p | grep -q libxcb-icccm.so.4; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "== installing Xvfb and Qt's X libraries with apt"; \
			apt-get update -q >/dev/null && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(APT_PACKAGES) >/dev/null; \
		else \
			echo "Xvfb or Qt's X libraries are missing: run 'sudo apt-get install $(APT_PACKAGES)'"; \
			exit 1; \
		fi; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

test: $(STAMP) system-deps lint
	@export TORCH_HOME="$$(mktemp -d)"; \
	$(PY) -m pytest

run: $(STAMP)
	@if [ -n "$${DISPLAY:-}$${WAYLAND_DISPLAY:-}" ]; then $(MAKE) --no-print-directory system-deps; fi
	$(PY) -m napari_cellseg._launch

screenshot: $(STAMP) system-deps
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m napari_cellseg._launch \
		--screenshot docs/images/napari_dock.png

clean:
	rm -rf $(VENV) demo-output .pytest_cache .ruff_cache
