//! End to end: QEMU machines (TCG) network-boot from the netbootd binary in network namespaces
//! made here, to a marker printed by a busybox initramfs (`tests/tools/boot-assets.sh`):
//!
//! - BIOS: SeaBIOS + the e1000's iPXE ROM → DHCP → HTTP script from a boot profile → kernel.
//! - BIOS through TFTP: a Smee-style inline `ipxeScript` makes the ROM chain `undionly.kpxe`
//!   from netbootd's TFTP; that iPXE does DHCP again, gets the same script, and boots (the
//!   script breaks the loop on `${net0/chip}`).
//! - UEFI: OVMF's own PXE client (virtio-net without ROM: arch 7, TFTP with tsize, blksize
//!   1468, windowsize 4) → `ipxe.efi` over TFTP → iPXE → script → kernel.
//! - BIOS and UEFI again in `proxy` mode beside busybox udhcpd (addresses only) in its own
//!   namespace: ProxyDHCP answers and the PXE boot server.
//! - BIOS and UEFI with the machine known only to OpenCHAMI SMD (the stand-in,
//!   `tests/tools/smd_standin.py`, in the server's namespace) and the iPXE script from its
//!   BSS-shaped `/boot/v1/bootscript?mac=` through `--ipxe-script-url-template`.
//! - GRUB instead of iPXE (`--dhcp-loaders`): OVMF with Secure Boot enforced runs Debian's
//!   signed shim, GRUB and kernel with netbootd's `grub.cfg` (reservation, and proxy mode)
//!   and refuses an unsigned `ipxe.efi`; an ARM64 machine (`qemu-system-aarch64`, AAVMF)
//!   boots Debian's arm64 shim, GRUB and kernel.
//! - The README's demo (`tests/demo/boot-a-vm.sh`), run verbatim.
//!
//! Boots run one at a time (TCG is CPU-bound). Each prints a timeline from netbootd's log lines
//! and the serial console. A helper dnsmasq sends IPv6 router advertisements on the clients'
//! bridge (not DHCP: `--port=0`, RA only): without any, iPXE waits about 13 s for IPv6
//! autoconfiguration before it uses DHCPv4.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::byo::{self, DhcpServer, Peer};
use common::kube::{need_peers, Kube};
use common::netns::{need_root_and, Lab, SRV_IP};
use common::{Server, TempDir, BIN};

const VM_MAC: &str = "52:54:00:12:34:56";
const VM_IP: &str = "10.77.0.51";
const BR_MAC: &str = "02:77:00:00:00:50";
const MARKER: &str = "NETBOOT-OK";
/// TCG on a busy two-core machine: the slowest boot (UEFI) takes about 25 s here.
const BOOT_LIMIT: Duration = Duration::from_secs(300);
const START_LIMIT: Duration = Duration::from_secs(20);
const TOOLS: &[&str] = &[
    "ip",
    "qemu-system-x86_64",
    "dnsmasq",
    "busybox",
    "cpio",
    "/usr/lib/ipxe/undionly.kpxe",
    "/usr/lib/ipxe/ipxe.efi",
    "/usr/lib/ipxe/qemu/pxe-e1000.rom",
    "/usr/share/OVMF/OVMF_CODE_4M.fd",
    "/usr/share/seabios/bios-256k.bin",
];

/// What the serial console shows on the way, for the timeline.
const BIOS_MILESTONES: &[&str] = &[
    "iPXE initialising",
    "Configuring (net0",
    "Linux version",
    "Run /init",
];
const UEFI_HTTP_MILESTONES: &[&str] = &[
    "Start HTTP Boot over IPv4",
    "Station IP address",
    "Downloading...100%",
    "iPXE initialising",
    "Configuring (net0",
    "EFI stub",
    "Run /init",
];
const UEFI_MILESTONES: &[&str] = &[
    "Start PXE over IPv4",
    "Station IP address",
    "NBP file downloaded",
    "iPXE initialising",
    "Configuring (net0",
    "EFI stub",
    "Run /init",
];

/// One VM at a time.
static BOOTS: Mutex<()> = Mutex::new(());

/// Runs `tests/tools/<script>` with `args` (it builds or fetches files, once per test run).
fn prepare(script: &str, args: &[&Path]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tools")
        .join(script);
    let out = Command::new(&path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{script} does not run: {e}"));
    assert!(
        out.status.success(),
        "{script} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tmp_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// The kernel and initramfs, built once per test run.
fn assets() -> &'static Path {
    static ASSETS: OnceLock<PathBuf> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let dir = tmp_dir("boot-assets");
        prepare("boot-assets.sh", &[&dir]);
        dir
    })
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Firmware {
    Bios,
    /// OVMF's PXE client.
    Uefi,
    /// OVMF's HTTP boot client (HTTPClient, arch 16): PXE is turned off through fw_cfg.
    UefiHttp,
    /// OVMF with Secure Boot enforced (Microsoft's keys enrolled, SMM): its PXE client, and
    /// netbootd's `--ipxe-dir` holds Debian's signed shim and GRUB network image
    /// (`tests/tools/secure-boot-assets.sh`) and an unsigned `ipxe.efi`.
    UefiSecureBoot,
    /// ARM64: `qemu-system-aarch64` with AAVMF's PXE client (arch 11); netbootd's
    /// `--ipxe-dir` holds Debian's arm64 shim and GRUB network image, and the profile boots
    /// Debian's arm64 kernel (`tests/tools/arm64-boot-assets.sh`).
    Arm64,
}

/// The ARM64 loaders' directory; the kernel and initramfs go below [`assets`] (`arm64/`).
fn arm64_loaders() -> &'static Path {
    static LOADERS: OnceLock<PathBuf> = OnceLock::new();
    LOADERS.get_or_init(|| {
        let dir = tmp_dir("arm64-loaders");
        prepare("arm64-boot-assets.sh", &[assets(), &dir]);
        dir
    })
}

/// shim, GRUB and the unsigned iPXE of the Secure Boot boots, fetched once per test run.
fn secure_boot_assets() -> &'static Path {
    static ASSETS: OnceLock<PathBuf> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let dir = tmp_dir("secure-boot");
        prepare("secure-boot-assets.sh", &[&dir]);
        dir
    })
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Reservation,
    Proxy,
    /// netbootd's DHCP off; the site's server runs `netbootd byo-dhcp`'s configuration (in
    /// its own namespace on the clients' segment; dnsmasq-proxy beside udhcpd, in netbootd's).
    Byo(Peer),
}

/// The machine in the inventory: booted from a profile, or from an inline script.
fn hardware(script: Option<&str>) -> String {
    let boot = match script {
        Some(s) => {
            let indented: String = s.lines().map(|l| format!("      {l}\n")).collect();
            format!("  netboot:\n    allowPxe: true\n    ipxeScript: |\n{indented}")
        }
        None => "  netboot:\n    allowPxe: true\n  boot:\n    kernel: vmlinuz\n    \
                 initrd: [initrd.img]\n    cmdline: console=ttyS0,115200 panic=-1 netbootd-test=profile\n"
            .to_string(),
    };
    format!(
        "{VM_MAC}:\n  ipAddress: {VM_IP}\n  subnetMask: 255.255.0.0\n  defaultGateway: {SRV_IP}\n  \
         hostname: vm1\n{boot}"
    )
}

/// The inline script of the TFTP-chain boot: the ROM's iPXE chains undionly.kpxe over TFTP;
/// that copy (`chip` undionly) boots the kernel.
fn chain_script() -> String {
    format!(
        "echo INLINE-SCRIPT chip=${{net0/chip}}\n\
         iseq ${{net0/chip}} undionly && goto boot ||\n\
         chain --autofree tftp://{SRV_IP}/undionly.kpxe\n\
         :boot\n\
         kernel http://{SRV_IP}/assets/vmlinuz initrd=initrd.img console=ttyS0,115200 panic=-1 netbootd-test=inline\n\
         initrd http://{SRV_IP}/assets/initrd.img\n\
         boot\n"
    )
}

/// The Kubernetes API in the server's namespace with the VM's Hardware object (its inline
/// script boots the kernel), and a kubeconfig for netbootd (token, CA).
fn kube_api(lab: &Lab) -> (Kube, PathBuf) {
    let kube = Kube::start(Some(&lab.srv), &[]);
    let script = format!(
        "kernel http://{SRV_IP}/assets/vmlinuz initrd=initrd.img console=ttyS0,115200 panic=-1 netbootd-test=kube\n\
         initrd http://{SRV_IP}/assets/initrd.img\n\
         boot\n"
    );
    kube.create(&format!(
        r#"{{"apiVersion":"tinkerbell.org/v1alpha1","kind":"Hardware","metadata":{{"name":"vm1","namespace":"tink"}},"spec":{{"interfaces":[{{"dhcp":{{"mac":"{VM_MAC}","hostname":"vm1","ip":{{"address":"{VM_IP}","netmask":"255.255.0.0","gateway":"{SRV_IP}"}}}},"netboot":{{"allowPXE":true,"ipxe":{{"contents":"{}"}}}}}}]}}}}"#,
        script.replace('\n', "\\n")
    ));
    let token = kube.dir.write("token", "tok-1\n");
    let server = format!("https://127.0.0.1:{}", kube.api_port);
    let config = kube.kubeconfig("netbootd.kubeconfig", &server, "ca.crt", &token);
    (kube, config)
}

/// Kills the process (QEMU, the RA helper) when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where the machine is known from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The hardware file.
    File,
    /// SMD (and its script in BSS), not a hardware file.
    Smd,
    /// Nowhere at first: it boots from the address pool (the reboot script) and reboots; after
    /// its second reboot script the hardware file gets it, and its next boot is the profile's.
    PoolThenFile,
    /// The hardware file, with no assets directory: kernel and initrd come through the asset
    /// cache from an upstream (tests/tools/upstream.py) in the server's namespace.
    FileThroughCache,
    /// A Tinkerbell Hardware object in the Kubernetes API (tests/common/kube.rs), run in the
    /// server's namespace: its inline iPXE script boots the kernel.
    Kube,
}

struct Boot {
    firmware: Firmware,
    mode: Mode,
    source: Source,
    script: Option<String>,
    /// Console lines that mark progress, in the order they should appear.
    milestones: &'static [&'static str],
    /// More netbootd options.
    extra_args: &'static [&'static str],
}

/// What a finished boot left behind, for the assertions.
struct Booted {
    marker: String,
    /// netbootd's log lines after QEMU started, with their time since then.
    server: Vec<(Duration, String)>,
    /// The site DHCP server's log (bring-your-own-DHCP boots).
    site_dhcp: String,
    /// The asset upstream's GET lines (boots through the cache).
    upstream: String,
    /// The serial console, escape sequences removed.
    console: String,
}

impl Booted {
    /// The first server line containing every needle, and when it came.
    fn first(&self, needles: &[&str]) -> (Duration, &str) {
        self.server
            .iter()
            .find(|(_, l)| needles.iter().all(|n| l.contains(n)))
            .map(|(t, l)| (*t, l.as_str()))
            .unwrap_or_else(|| {
                let log: Vec<&str> = self.server.iter().map(|(_, l)| l.as_str()).collect();
                panic!("no netbootd line with {needles:?}:\n{}", log.join("\n"))
            })
    }
}

/// Removes ANSI escape sequences and carriage returns (iPXE draws its progress with them).
fn plain(console: &[u8]) -> String {
    let text = String::from_utf8_lossy(console);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

impl Boot {
    fn run(&self, name: &str) -> Booted {
        self.run_until(name, MARKER)
    }

    /// Boots until the console shows `until` (the line with it is [`Booted::marker`]).
    fn run_until(&self, name: &str, until: &str) -> Booted {
        let _one_at_a_time = BOOTS.lock().unwrap_or_else(|p| p.into_inner());
        let assets = assets();
        let dir = TempDir::new(name);
        let mut lab = Lab::new(BR_MAC);
        match self.mode {
            // GRUB 2.06 reads only the site server's reply (not ProxyDHCP's): a site that
            // boots GRUB beside netbootd names netbootd as its next server.
            Mode::Proxy if self.firmware == Firmware::UefiSecureBoot => {
                lab.start_plain_dhcp_with(&dir.0, &format!("siaddr {SRV_IP}\n"))
            }
            Mode::Proxy | Mode::Byo(Peer::DnsmasqProxy) => lab.start_plain_dhcp(&dir.0),
            Mode::Byo(_) => {
                lab.add_dhcp_segment();
            }
            Mode::Reservation => {}
        }
        let _ra = router_adverts(&lab, &dir);
        let _smd = (self.source == Source::Smd).then(|| smd_standin(&lab, &dir));
        let _upstream =
            (self.source == Source::FileThroughCache).then(|| asset_upstream(&lab, &dir, assets));
        let kube = (self.source == Source::Kube).then(|| kube_api(&lab));
        let kubeconfig = kube.as_ref().map(|(_, config)| config.clone());
        let netbootd_args = self.netbootd_args(&dir, assets, kubeconfig.as_deref());
        let mut server = self.start_server(&lab, &netbootd_args);
        let site_dhcp = match self.mode {
            Mode::Byo(peer) => Some(site_dhcp(peer, &lab, &dir, &netbootd_args)),
            _ => None,
        };

        lab.cli
            .run(&["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"]);
        lab.cli
            .run(&["ip", "link", "set", "tap0", "master", "br0", "up"]);
        let serial = dir.path("serial.log");
        let qemu_out = std::fs::File::create(dir.path("qemu.out")).unwrap();
        let qemu_bin = if self.firmware == Firmware::Arm64 {
            "qemu-system-aarch64"
        } else {
            "qemu-system-x86_64"
        };
        let mut args: Vec<String> = [
            qemu_bin,
            "-accel",
            "tcg",
            "-m",
            "512",
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-monitor",
            "none",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // A machine from the pool must reboot; every other boot ends QEMU if it tries.
        if self.source != Source::PoolThenFile {
            args.push("-no-reboot".into());
        }
        args.push("-serial".into());
        args.push(format!("file:{}", serial.display()));
        args.extend(self.firmware_args(&dir));
        args.extend([
            "-netdev".into(),
            "tap,id=n0,ifname=tap0,script=no,downscript=no".into(),
            "-device".into(),
            match self.firmware {
                // SeaBIOS runs the NIC's iPXE ROM.
                Firmware::Bios => format!("e1000,netdev=n0,mac={VM_MAC},bootindex=1"),
                // No ROM: OVMF's own virtio-net driver and EDK2 PXE client.
                Firmware::Uefi
                | Firmware::UefiHttp
                | Firmware::UefiSecureBoot
                | Firmware::Arm64 => {
                    format!("virtio-net-pci,netdev=n0,mac={VM_MAC},bootindex=1,romfile=")
                }
            },
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let t0 = Instant::now();
        let qemu = lab
            .cli
            .command(&args)
            .stdin(Stdio::null())
            .stdout(qemu_out.try_clone().unwrap())
            .stderr(qemu_out)
            .spawn()
            .expect("qemu starts");
        let mut qemu = Reaped(qemu);

        let mut seen: Vec<(Duration, &str)> = Vec::new();
        let mut known = self.source != Source::PoolThenFile;
        let mut unterminated_before: Option<String> = None;
        let (marker, console) = loop {
            if !known
                && server
                    .log(Duration::from_millis(1))
                    .matches("/unknown.ipxe -> 200")
                    .count()
                    >= 2
            {
                std::fs::write(dir.path("hardware.yaml"), hardware(self.script.as_deref()))
                    .unwrap();
                known = true;
            }
            let console = plain(&std::fs::read(&serial).unwrap_or_default());
            for m in self.milestones {
                if !seen.iter().any(|(_, s)| s == m) && console.contains(m) {
                    seen.push((t0.elapsed(), m));
                }
            }
            // Whole lines only: the serial file may end in the middle of the marker's line.
            // An unterminated last line counts once it stopped growing for one poll.
            let (complete, last) = console.split_at(console.rfind('\n').map_or(0, |end| end + 1));
            if let Some(line) = complete.lines().find(|l| l.contains(until)) {
                break (line.to_string(), console);
            }
            if last.contains(until) && unterminated_before.as_deref() == Some(last) {
                break (last.to_string(), console);
            }
            unterminated_before = Some(last.to_string());
            let exited = qemu.0.try_wait().unwrap().is_some();
            if exited || t0.elapsed() > BOOT_LIMIT {
                let tail: String = console
                    .chars()
                    .rev()
                    .take(3000)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                panic!(
                    "{name}: no {until} ({}) after {:?}\n--- console tail:\n{tail}\n--- qemu:\n{}\n--- netbootd:\n{}\n--- site DHCP server:\n{}",
                    if exited { "QEMU exited" } else { "timed out" },
                    t0.elapsed(),
                    std::fs::read_to_string(dir.path("qemu.out")).unwrap_or_default(),
                    server.log(Duration::from_millis(200)),
                    site_dhcp.as_ref().map(DhcpServer::log_text).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let at_marker = t0.elapsed();
        server.log(Duration::from_millis(300));
        let lines: Vec<(Duration, String)> = server
            .seen_at
            .iter()
            .zip(&server.seen)
            .filter(|(at, _)| **at >= t0)
            .map(|(at, l)| (at.duration_since(t0), l.clone()))
            .collect();
        let booted = Booted {
            marker,
            server: lines,
            site_dhcp: site_dhcp
                .as_ref()
                .map(DhcpServer::log_text)
                .unwrap_or_default(),
            upstream: std::fs::read_to_string(dir.path("upstream.log")).unwrap_or_default(),
            console,
        };
        self.print_timeline(name, &booted, &seen, at_marker, until);
        booted
    }

    fn firmware_args(&self, dir: &TempDir) -> Vec<String> {
        match self.firmware {
            Firmware::Bios => {
                // SeaBIOS mirrors the ROM's text console to serial only when told the port,
                // as a binary little-endian number.
                let port = dir.path("sercon-port.bin");
                std::fs::write(&port, [0xf8, 0x03]).unwrap();
                vec![
                    "-machine".into(),
                    "pc".into(),
                    "-boot".into(),
                    "n".into(),
                    "-fw_cfg".into(),
                    format!("name=etc/sercon-port,file={}", port.display()),
                ]
            }
            Firmware::Arm64 => {
                let vars = dir.path("AAVMF_VARS.fd");
                std::fs::copy("/usr/share/AAVMF/AAVMF_VARS.fd", &vars).unwrap();
                vec![
                    "-machine".into(),
                    "virt".into(),
                    "-cpu".into(),
                    "cortex-a72".into(),
                    "-drive".into(),
                    "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd"
                        .into(),
                    "-drive".into(),
                    format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
                ]
            }
            Firmware::UefiSecureBoot => {
                // Microsoft's keys enrolled and Secure Boot on; the variable store is
                // protected by SMM, which this firmware build requires.
                let vars = dir.path("OVMF_VARS.fd");
                std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.ms.fd", &vars).unwrap();
                vec![
                    "-machine".into(),
                    "q35,smm=on".into(),
                    "-global".into(),
                    "driver=cfi.pflash01,property=secure,value=on".into(),
                    "-drive".into(),
                    "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
                        .into(),
                    "-drive".into(),
                    format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
                ]
            }
            Firmware::Uefi | Firmware::UefiHttp => {
                let vars = dir.path("OVMF_VARS.fd");
                std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).unwrap();
                let mut args: Vec<String> = vec!["-vga".into(), "none".into()];
                if self.firmware == Firmware::UefiHttp {
                    // OVMF's boot options per NIC: PXE over IPv4 and IPv6, then HTTP boot over
                    // both. Without PXE (and IPv6) the first is HTTP boot over IPv4.
                    for knob in ["IPv4PXESupport", "IPv6PXESupport", "IPv6Support"] {
                        args.push("-fw_cfg".into());
                        args.push(format!("name=opt/org.tianocore/{knob},string=no"));
                    }
                }
                args.extend([
                    "-machine".into(),
                    "q35".into(),
                    "-drive".into(),
                    "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"
                        .into(),
                    "-drive".into(),
                    format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
                ]);
                args
            }
        }
    }

    /// netbootd's arguments for this boot (also those `byo-dhcp` is run with).
    fn netbootd_args(
        &self,
        dir: &TempDir,
        assets: &Path,
        kubeconfig: Option<&Path>,
    ) -> Vec<String> {
        let hw = match self.source {
            Source::PoolThenFile => dir.write("hardware.yaml", "{}\n"),
            // Debian's arm64 kernel and initramfs over TFTP (its arm64 GRUB network image has
            // no http module); the console is the PL011.
            _ if self.firmware == Firmware::Arm64 => dir.write(
                "hardware.yaml",
                &hardware(None)
                    .replace("kernel: vmlinuz", "kernel: arm64/vmlinuz")
                    .replace("initrd.img", "arm64/initrd.img")
                    .replace("console=ttyS0,115200", "console=ttyAMA0"),
            ),
            _ => dir.write("hardware.yaml", &hardware(self.script.as_deref())),
        };
        let mode = match self.mode {
            Mode::Reservation => "reservation",
            Mode::Proxy => "proxy",
            Mode::Byo(_) => "off",
        };
        let config = dir.write("netbootd.toml", &format!("{SMD_SUBNETS}{POOL}"));
        let state = dir.path("state");
        std::fs::create_dir_all(&state).unwrap();
        let template = format!("http://{SRV_IP}:{SMD_PORT}/boot/v1/bootscript?mac={{mac}}");
        let smd_url = format!("http://{SRV_IP}:{SMD_PORT}");
        let source = match self.source {
            Source::Smd => vec![
                "--config",
                config.to_str().unwrap(),
                "--backend-smd-url",
                &smd_url,
                "--ipxe-script-url-template",
                &template,
                "--state-dir",
                state.to_str().unwrap(),
            ],
            Source::PoolThenFile => vec![
                "--config",
                config.to_str().unwrap(),
                "--backend-file-path",
                hw.to_str().unwrap(),
                "--state-dir",
                state.to_str().unwrap(),
            ],
            Source::File | Source::FileThroughCache => {
                vec!["--backend-file-path", hw.to_str().unwrap()]
            }
            Source::Kube => vec![
                "--backend-kube-enabled=true",
                "--backend-kube-config",
                kubeconfig.and_then(Path::to_str).unwrap_or(""),
                "--state-dir",
                state.to_str().unwrap(),
            ],
        };
        let args = [
            "--dhcp-iface",
            "s0",
            "--dhcp-mode",
            mode,
            "--ipxe-dir",
            "/usr/lib/ipxe",
            "--assets-dir",
            assets.to_str().unwrap(),
            "--tftp-addr",
            SRV_IP,
            "--tftp-block-size",
            "1468",
            "--http-addr",
            SRV_IP,
            "--http-port",
            "80",
            "--dhcp-http-ipxe-script-port",
            "80",
            "--dhcp-http-ipxe-binary-port",
            "80",
            "--syslog-addr",
            SRV_IP,
        ];
        let mut all: Vec<String> = source.into_iter().chain(args).map(str::to_string).collect();
        if self.source == Source::FileThroughCache {
            let at = all.iter().position(|a| a == "--assets-dir").unwrap();
            all.splice(
                at..at + 2,
                [
                    "--assets-upstream".to_string(),
                    format!("http://{SRV_IP}:{UPSTREAM_PORT}/"),
                    "--assets-cache-dir".to_string(),
                    dir.path("cache").to_str().unwrap().to_string(),
                ],
            );
        }
        let loaders = match self.firmware {
            Firmware::UefiSecureBoot => Some(secure_boot_assets()),
            Firmware::Arm64 => Some(arm64_loaders()),
            _ => None,
        };
        if let Some(loaders) = loaders {
            let at = all.iter().position(|a| a == "--ipxe-dir").unwrap();
            all[at + 1] = loaders.to_str().unwrap().to_string();
        }
        all.extend(self.extra_args.iter().map(|a| a.to_string()));
        all
    }

    fn start_server(&self, lab: &Lab, args: &[String]) -> Server {
        let mut cmd = lab.srv.command(&[BIN]);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .args(args);
        let mut server = Server::spawn(cmd);
        server.wait_for("syslog receiver on", START_LIMIT);
        server
    }

    fn print_timeline(
        &self,
        name: &str,
        b: &Booted,
        console: &[(Duration, &str)],
        at_marker: Duration,
        marker: &str,
    ) {
        let mut events: Vec<(Duration, String)> = console
            .iter()
            .map(|(t, m)| (*t, format!("console: {m}")))
            .collect();
        let server_events: [(&str, &[&str]); 5] = [
            ("first OFFER", &["-> OFFER"]),
            ("TFTP done", &["tftp ", ": complete"]),
            ("script served", &["auto.ipxe -> 200"]),
            ("kernel served", &["/assets/vmlinuz -> 200"]),
            ("initrd served", &["/assets/initrd.img -> 200"]),
        ];
        for (what, needles) in server_events {
            if let Some((t, line)) = b
                .server
                .iter()
                .find(|(_, l)| needles.iter().all(|n| l.contains(n)))
            {
                let detail = line.split_once("] ").map_or(line.as_str(), |(_, d)| d);
                let detail: String = detail.chars().take(150).collect();
                events.push((*t, format!("netbootd: {what}: {detail}")));
            }
        }
        events.push((at_marker, format!("console: {}", b.marker.trim())));
        events.sort_by_key(|(t, _)| *t);
        println!(
            "\n{name}: {:?} {:?}, {marker} after {:.1} s",
            self.firmware,
            self.mode,
            at_marker.as_secs_f64()
        );
        for (t, e) in events {
            println!("  {:6.2}s  {e}", t.as_secs_f64());
        }
        for line in b.site_dhcp.lines().filter(|l| l.contains(VM_MAC)).take(8) {
            println!("  site DHCP server: {line}");
        }
    }
}

/// The site's DHCP server running what `netbootd byo-dhcp` generates from netbootd's own
/// arguments (run in netbootd's namespace, where "auto" is its address): in the DHCP
/// namespace on the clients' segment, or dnsmasq-proxy in netbootd's namespace beside udhcpd.
fn site_dhcp(peer: Peer, lab: &Lab, dir: &TempDir, netbootd_args: &[String]) -> DhcpServer {
    let args: Vec<&str> = netbootd_args.iter().map(String::as_str).collect();
    let (generated, text) = byo::generate(peer, &lab.srv, &args, dir);
    println!("--- netbootd byo-dhcp {}:\n{text}", peer.name());
    match peer {
        Peer::DnsmasqProxy => DhcpServer::start(peer, &lab.srv, "s0", &generated, dir),
        _ => {
            let ns = lab.dhcp.as_ref().expect("the DHCP segment");
            DhcpServer::start(peer, ns, "p0", &generated, dir)
        }
    }
}

/// A boot with netbootd's DHCP off: the site's server gave the address and the boot files
/// (its log acknowledged the machine), netbootd only TFTP and HTTP, and iPXE asked for the
/// script by the MAC it filled in itself (`${mac}` in the generated URL).
fn assert_booted_by_site(b: &Booted, peer: Peer, client_net: &str) {
    assert!(
        !b.server.iter().any(|(_, l)| l.contains("dhcp: ")),
        "netbootd's DHCP is off"
    );
    let acked = peer.ack_line(VM_IP, VM_MAC);
    assert!(
        b.site_dhcp
            .lines()
            .any(|l| acked.iter().all(|n| l.contains(n.as_str()))),
        "no {acked:?} in the site server's log:\n{}",
        b.site_dhcp
    );
    // iPXE percent-encodes the colons of the MAC it put in the path.
    let path = format!("GET /{}/auto.ipxe -> 200", VM_MAC.replace(':', "%3A"));
    let (_, script) = b.first(&[&path]);
    assert!(script.contains(&format!("mac={VM_MAC}")), "{script}");
    assert_served(b, "netbootd-test=profile", "profile", client_net);
}

fn byo_boot(firmware: Firmware, peer: Peer, name: &str) -> Booted {
    let milestones = match firmware {
        Firmware::Bios => BIOS_MILESTONES,
        Firmware::Uefi | Firmware::UefiSecureBoot | Firmware::Arm64 => UEFI_MILESTONES,
        Firmware::UefiHttp => UEFI_HTTP_MILESTONES,
    };
    Boot {
        firmware,
        mode: Mode::Byo(peer),
        source: Source::File,
        script: None,
        milestones,
        extra_args: &[],
    }
    .run(name)
}

/// UEFI PXE with a site server: the firmware took ipxe.efi from netbootd's TFTP.
fn assert_uefi_took_ipxe_from_tftp(b: &Booted) {
    let size = std::fs::metadata("/usr/lib/ipxe/ipxe.efi").unwrap().len();
    let (_, tftp) = b.first(&["RRQ \"ipxe.efi\"", ": complete"]);
    assert!(tftp.contains(&format!("complete, {size} bytes")), "{tftp}");
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn bios_boots_with_addresses_from_dnsmasq_running_the_generated_config() {
    need_root_and("boot bios byo dnsmasq", TOOLS);
    let b = byo_boot(Firmware::Bios, Peer::Dnsmasq, "boot-bios-dnsmasq");
    assert_booted_by_site(&b, Peer::Dnsmasq, VM_IP);
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn uefi_boots_with_addresses_from_dnsmasq_running_the_generated_config() {
    need_root_and("boot uefi byo dnsmasq", TOOLS);
    let b = byo_boot(Firmware::Uefi, Peer::Dnsmasq, "boot-uefi-dnsmasq");
    assert_uefi_took_ipxe_from_tftp(&b);
    assert_booted_by_site(&b, Peer::Dnsmasq, VM_IP);
}

#[test]
#[ignore = "needs root, network namespaces and Kea (tests/tools/unpack-dhcp-servers.sh): run tests/run.sh"]
fn bios_boots_with_addresses_from_kea_running_the_generated_config() {
    need_root_and("boot bios byo kea", TOOLS);
    byo::need_servers("boot bios byo kea");
    let b = byo_boot(Firmware::Bios, Peer::Kea, "boot-bios-kea");
    assert_booted_by_site(&b, Peer::Kea, VM_IP);
}

#[test]
#[ignore = "needs root, network namespaces and Kea (tests/tools/unpack-dhcp-servers.sh): run tests/run.sh"]
fn uefi_boots_with_addresses_from_kea_running_the_generated_config() {
    need_root_and("boot uefi byo kea", TOOLS);
    byo::need_servers("boot uefi byo kea");
    let b = byo_boot(Firmware::Uefi, Peer::Kea, "boot-uefi-kea");
    assert_uefi_took_ipxe_from_tftp(&b);
    assert_booted_by_site(&b, Peer::Kea, VM_IP);
}

#[test]
#[ignore = "needs root, network namespaces and ISC dhcpd (tests/tools/unpack-dhcp-servers.sh): run tests/run.sh"]
fn bios_boots_with_addresses_from_isc_dhcpd_running_the_generated_config() {
    need_root_and("boot bios byo isc", TOOLS);
    byo::need_servers("boot bios byo isc");
    let b = byo_boot(Firmware::Bios, Peer::Isc, "boot-bios-isc");
    assert_booted_by_site(&b, Peer::Isc, VM_IP);
}

#[test]
#[ignore = "needs root, network namespaces and ISC dhcpd (tests/tools/unpack-dhcp-servers.sh): run tests/run.sh"]
fn uefi_boots_with_addresses_from_isc_dhcpd_running_the_generated_config() {
    need_root_and("boot uefi byo isc", TOOLS);
    byo::need_servers("boot uefi byo isc");
    let b = byo_boot(Firmware::Uefi, Peer::Isc, "boot-uefi-isc");
    assert_uefi_took_ipxe_from_tftp(&b);
    assert_booted_by_site(&b, Peer::Isc, VM_IP);
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn bios_boots_through_dnsmasq_proxy_dhcp_beside_a_router() {
    need_root_and("boot bios byo dnsmasq proxy", TOOLS);
    let b = byo_boot(
        Firmware::Bios,
        Peer::DnsmasqProxy,
        "boot-bios-dnsmasq-proxy",
    );
    // The address came from udhcpd (the router: 10.77.3.10-200).
    assert_booted_by_site(&b, Peer::DnsmasqProxy, "10.77.3.");
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn uefi_boots_through_dnsmasq_proxy_dhcp_beside_a_router() {
    need_root_and("boot uefi byo dnsmasq proxy", TOOLS);
    let b = byo_boot(
        Firmware::Uefi,
        Peer::DnsmasqProxy,
        "boot-uefi-dnsmasq-proxy",
    );
    assert_uefi_took_ipxe_from_tftp(&b);
    assert_booted_by_site(&b, Peer::DnsmasqProxy, "10.77.3.");
}

/// UEFI HTTP boot: no TFTP at all; the firmware fetched ipxe.efi over HTTP.
fn assert_http_booted(b: &Booted) {
    assert!(
        !b.server.iter().any(|(_, l)| l.contains("tftp ")),
        "no TFTP in an HTTP boot"
    );
    let size = std::fs::metadata("/usr/lib/ipxe/ipxe.efi").unwrap().len();
    let (t_binary, line) = b.first(&["GET /ipxe/", &format!("ipxe.efi -> 200 {size} bytes")]);
    assert!(line.contains(&format!("http {VM_IP}")), "{line}");
    let (t_script, _) = b.first(&["auto.ipxe -> 200"]);
    assert!(t_binary < t_script);
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn uefi_http_boot_fetches_ipxe_over_http_from_netbootd_dhcp() {
    need_root_and("boot uefi http", TOOLS);
    let b = Boot {
        firmware: Firmware::UefiHttp,
        mode: Mode::Reservation,
        source: Source::File,
        script: None,
        extra_args: &[],
        milestones: UEFI_HTTP_MILESTONES,
    }
    .run("boot-uefi-http");
    let (_, offer) = b.first(&["DISCOVER", "arch=16", "client=http-boot", "-> OFFER"]);
    assert!(
        offer.contains(&format!("file=http://{SRV_IP}/ipxe/{VM_MAC}/ipxe.efi")),
        "{offer}"
    );
    assert_http_booted(&b);
    assert_served(&b, "netbootd-test=profile", "profile", VM_IP);
}

#[test]
#[ignore = "needs root, network namespaces and Kea (tests/tools/unpack-dhcp-servers.sh): run tests/run.sh"]
fn uefi_http_boot_fetches_ipxe_over_http_with_addresses_from_kea() {
    need_root_and("boot uefi http byo kea", TOOLS);
    byo::need_servers("boot uefi http byo kea");
    let b = byo_boot(Firmware::UefiHttp, Peer::Kea, "boot-uefi-http-kea");
    assert_http_booted(&b);
    assert_booted_by_site(&b, Peer::Kea, VM_IP);
}

/// The port of the SMD stand-in in the server's namespace.
const SMD_PORT: u16 = 27779;

/// What SMD does not hold, for the lab's network.
/// The pool of the unknown-machine boots: a short sleep before the reboot.
const POOL: &str = "[[pool]]\nrange = \"10.77.9.100-10.77.9.119\"\nsubnet = \"10.77.0.0/16\"\ngateway = \"10.77.0.1\"\nreboot-sleep = \"1s\"\n";
const SMD_SUBNETS: &str = "[subnets.lab]\ncidr = \"10.77.0.0/16\"\ngateway = \"10.77.0.1\"\n";

/// The SMD stand-in in the server's namespace, on the server's address, holding the VM as
/// node x1000c0s0b0n0 (NID 7) and its BMC, and serving BSS-shaped boot scripts whose kernel
/// and initrd come from netbootd's assets.
fn smd_standin(lab: &Lab, dir: &TempDir) -> Reaped {
    let interfaces = dir.write(
        "interfaces.json",
        &format!(
            r#"[{{"MACAddress":"{VM_MAC}","ComponentID":"x1000c0s0b0n0","IPAddresses":[{{"IPAddress":"{VM_IP}"}}]}},
               {{"MACAddress":"02:77:00:00:00:99","ComponentID":"x1000c0s0b0","IPAddresses":[{{"IPAddress":"10.77.0.99"}}]}}]"#
        ),
    );
    let components = dir.write(
        "components.json",
        r#"{"Components":[{"ID":"x1000c0s0b0n0","Type":"Node","State":"Ready","Enabled":true,"NID":7,"Arch":"X86"},
                          {"ID":"x1000c0s0b0","Type":"NodeBMC","State":"Ready","Enabled":true}]}"#,
    );
    let tool = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/smd_standin.py");
    let port = SMD_PORT.to_string();
    let mut child = lab
        .srv
        .command(&[
            "python3",
            tool,
            &port,
            interfaces.to_str().unwrap(),
            components.to_str().unwrap(),
        ])
        .env("SMD_BIND", SRV_IP)
        .env("SMD_BSS_ASSETS", format!("http://{SRV_IP}/assets"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the SMD stand-in starts");
    common::wait_ready(&mut child);
    Reaped(child)
}

/// The asset upstream of the boot through the cache.
const UPSTREAM_PORT: u16 = 8081;

/// An HTTP upstream serving the boot assets in the server's namespace; its GETs go to
/// `upstream.log` in `dir`.
fn asset_upstream(lab: &Lab, dir: &TempDir, assets: &Path) -> Reaped {
    let tool = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/upstream.py");
    let port = UPSTREAM_PORT.to_string();
    let log = dir.path("upstream.log");
    let mut child = lab
        .srv
        .command(&[
            "python3",
            tool,
            assets.to_str().unwrap(),
            &port,
            "0",
            SRV_IP,
            log.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the asset upstream starts");
    common::wait_ready(&mut child);
    Reaped(child)
}

/// A helper dnsmasq sending IPv6 router advertisements (only) on the clients' bridge.
fn router_adverts(lab: &Lab, dir: &TempDir) -> Reaped {
    lab.cli
        .run(&["sysctl", "-qw", "net.ipv6.conf.br0.disable_ipv6=0"]);
    lab.cli.run(&[
        "ip",
        "-6",
        "addr",
        "add",
        "fd77::2/64",
        "dev",
        "br0",
        "nodad",
    ]);
    let log = std::fs::File::create(dir.path("ra.log")).unwrap();
    let child = lab
        .cli
        .command(&[
            "dnsmasq",
            "-k",
            "--conf-file=/dev/null",
            "--port=0",
            "--pid-file=",
            "--interface=br0",
            "--bind-interfaces",
            "--enable-ra",
            "--dhcp-range=::,constructor:br0,ra-only,64",
            "--log-facility=-",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("dnsmasq (RA helper) starts");
    Reaped(child)
}

/// The checks every boot shares: the marker carries the expected kernel argument, and
/// netbootd served the script and then the kernel and initrd whole, before the marker.
fn assert_served(b: &Booted, test_arg: &str, script_kind: &str, client_net: &str) {
    assert!(b.marker.contains(test_arg), "marker {:?}", b.marker);
    let kernel = std::fs::metadata(assets().join("vmlinuz")).unwrap().len();
    let (t_script, line) = b.first(&["auto.ipxe -> 200", &format!("script {script_kind}")]);
    assert!(line.contains(&format!("http {client_net}")), "{line}");
    assert!(line.contains(&format!("mac={VM_MAC}")), "{line}");
    let (t_kernel, _) = b.first(&[&format!("GET /assets/vmlinuz -> 200 {kernel} bytes")]);
    b.first(&["GET /assets/initrd.img -> 200"]);
    assert!(t_script <= t_kernel);
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn bios_boots_a_boot_profile_in_reservation_mode() {
    need_root_and("boot bios", TOOLS);
    let b = Boot {
        firmware: Firmware::Bios,
        mode: Mode::Reservation,
        source: Source::File,
        script: None,
        extra_args: &[],
        milestones: BIOS_MILESTONES,
    }
    .run("boot-bios");
    let (t_offer, offer) = b.first(&["DISCOVER", &format!("mac={VM_MAC}"), "-> OFFER"]);
    assert!(offer.contains(&format!("OFFER {VM_IP}")), "{offer}");
    assert!(
        offer.contains(&format!("file=http://{SRV_IP}/{VM_MAC}/auto.ipxe")),
        "the ROM is iPXE: it gets the script URL at once: {offer}"
    );
    assert_served(&b, "netbootd-test=profile", "profile", VM_IP);
    assert!(t_offer < b.first(&["auto.ipxe -> 200"]).0);
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn bios_boots_a_kernel_and_initrd_that_come_through_the_asset_cache() {
    need_root_and("boot bios through the cache", TOOLS);
    let b = Boot {
        firmware: Firmware::Bios,
        mode: Mode::Reservation,
        source: Source::FileThroughCache,
        script: None,
        extra_args: &[],
        milestones: BIOS_MILESTONES,
    }
    .run("boot-bios-cache");
    assert_served(&b, "netbootd-test=profile", "profile", VM_IP);
    b.first(&["assets vmlinuz: fetched", "cached"]);
    b.first(&["assets initrd.img: fetched", "cached"]);
    let log = &b.upstream;
    assert_eq!(log.matches("GET /vmlinuz 200").count(), 1, "{log}");
    assert_eq!(log.matches("GET /initrd.img 200").count(), 1, "{log}");
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn bios_chains_undionly_over_tftp_from_an_inline_script() {
    need_root_and("boot bios tftp chain", TOOLS);
    let b = Boot {
        firmware: Firmware::Bios,
        mode: Mode::Reservation,
        source: Source::File,
        script: Some(chain_script()),
        extra_args: &[],
        milestones: &[
            "iPXE initialising",
            "INLINE-SCRIPT chip=",
            "undionly.kpxe",
            "INLINE-SCRIPT chip=undionly",
            "Linux version",
            "Run /init",
        ],
    }
    .run("boot-bios-chain");
    let (t_tftp, tftp) = b.first(&["RRQ \"undionly.kpxe\"", ": complete"]);
    let size = std::fs::metadata("/usr/lib/ipxe/undionly.kpxe")
        .unwrap()
        .len();
    assert!(tftp.contains(&format!("complete, {size} bytes")), "{tftp}");
    // The script twice: the ROM's iPXE, then the chained undionly after its own DHCP.
    let scripts: Vec<Duration> = b
        .server
        .iter()
        .filter(|(_, l)| l.contains("auto.ipxe -> 200") && l.contains("script inline"))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(scripts.len(), 2, "script requests at {scripts:?}");
    assert!(scripts[0] < t_tftp && t_tftp < scripts[1]);
    assert_served(&b, "netbootd-test=inline", "inline", VM_IP);
}

/// The inline script of the autoexec.ipxe boot: Debian's iPXE (a 2019 snapshot) does not ask
/// for autoexec.ipxe by itself as newer builds do, so the script fetches it the way they
/// would, over TFTP from the boot server, and runs it; the patch marks the second pass.
fn autoexec_script() -> String {
    format!(
        "echo INLINE-SCRIPT patched=${{patched}}\n\
         isset ${{patched}} && goto boot ||\n\
         chain --autofree tftp://{SRV_IP}/autoexec.ipxe\n\
         :boot\n\
         kernel http://{SRV_IP}/assets/vmlinuz initrd=initrd.img console=ttyS0,115200 panic=-1 netbootd-test=inline\n\
         initrd http://{SRV_IP}/assets/initrd.img\n\
         boot\n"
    )
}

/// A Secure Boot site serves signed iPXE unmodified: autoexec.ipxe over TFTP carries
/// --ipxe-script-patch and the chain to the machine's script (found by the client's address),
/// and real iPXE runs both: the patch, its own DHCP, then the machine's script.
#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn uefi_ipxe_runs_the_script_patch_from_autoexec_ipxe() {
    need_root_and("boot uefi autoexec", TOOLS);
    let b = Boot {
        firmware: Firmware::Uefi,
        mode: Mode::Reservation,
        source: Source::File,
        script: Some(autoexec_script()),
        milestones: &[
            "Start PXE over IPv4",
            "NBP file downloaded",
            "iPXE initialising",
            "INLINE-SCRIPT patched=",
            "NETBOOTD-PATCH-RAN",
            "INLINE-SCRIPT patched=yes",
            "EFI stub",
            "Run /init",
        ],
        extra_args: &[
            "--ipxe-script-patch",
            "echo NETBOOTD-PATCH-RAN\nset patched yes",
        ],
    }
    .run("boot-uefi-autoexec");
    let (t_made, line) = b.first(&["autoexec.ipxe\": --ipxe-script-patch and a chain to"]);
    assert!(
        line.contains(&format!("/{VM_MAC}/auto.ipxe")) && line.contains(&format!("mac={VM_MAC}")),
        "{line}"
    );
    let (t_sent, _) = b.first(&["autoexec.ipxe\" (autoexec.ipxe (made of", ": complete"]);
    assert!(t_made <= t_sent);
    // Debian's binary has no marker: served as it is, with the WARN.
    b.first(&["ipxe.efi: no script marker"]);
    // The machine's script twice: before and after the patch ran.
    let scripts = b
        .server
        .iter()
        .filter(|(_, l)| l.contains("auto.ipxe -> 200") && l.contains("script inline"))
        .count();
    assert_eq!(scripts, 2);
    assert_served(&b, "netbootd-test=inline", "inline", VM_IP);
}

/// A UEFI machine in reservation mode takes `binary` over TFTP (blksize 1468, windowsize 4),
/// whose iPXE then asks netbootd again and boots the profile.
fn uefi_pxe_boot(binary: &str, extra_args: &'static [&'static str], name: &str) {
    let b = Boot {
        firmware: Firmware::Uefi,
        mode: Mode::Reservation,
        source: Source::File,
        script: None,
        extra_args,
        milestones: UEFI_MILESTONES,
    }
    .run(name);
    let (_, offer) = b.first(&["DISCOVER", "arch=7", "client=firmware", "-> OFFER"]);
    assert!(offer.contains(&format!("file={binary}")), "{offer}");
    let size = std::fs::metadata(format!("/usr/lib/ipxe/{binary}"))
        .unwrap()
        .len();
    let (t_tftp, tftp) = b.first(&[&format!("RRQ \"{binary}\""), ": complete"]);
    assert!(
        tftp.contains(&format!("complete, {size} bytes"))
            && tftp.contains("blksize 1468, windowsize 4"),
        "{tftp}"
    );
    let (t_ipxe, _) = b.first(&["DISCOVER", "arch=7", "client=ipxe", "-> OFFER"]);
    assert!(t_tftp < t_ipxe);
    assert_served(&b, "netbootd-test=profile", "profile", VM_IP);
}

/// snponly.efi (iPXE driving the NIC through the firmware's own driver, which users of several
/// projects need on NICs where ipxe.efi's drivers fail) boots the same machine; the figures
/// against ipxe.efi are benches/uefi-loaders.sh's.
#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn uefi_pxe_fetches_snponly_efi_over_tftp_then_boots_the_profile() {
    need_root_and("boot uefi snponly", TOOLS);
    let table = &[
        "--dhcp-ipxe-binaries",
        "0=undionly.kpxe,7=snponly.efi,9=snponly.efi",
    ];
    uefi_pxe_boot("snponly.efi", table, "boot-uefi-snponly");
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn uefi_pxe_fetches_ipxe_efi_over_tftp_then_boots_the_profile() {
    need_root_and("boot uefi", TOOLS);
    uefi_pxe_boot("ipxe.efi", &[], "boot-uefi");
}

const SECURE_BOOT_TOOLS: &[&str] = &[
    "ip",
    "qemu-system-x86_64",
    "dnsmasq",
    "busybox",
    "cpio",
    "apt-get",
    "dpkg-deb",
    "/usr/lib/ipxe/ipxe.efi",
    "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
    "/usr/share/OVMF/OVMF_VARS_4M.ms.fd",
];

/// A UEFI machine given GRUB for its architecture (`--dhcp-loaders ARCH=grub`): the
/// firmware's PXE client takes `shim` over TFTP, shim starts `grub` (GRUB's network image) from
/// the same server, GRUB reads the machine's `grub.cfg` made by netbootd and loads the
/// profile's kernel and initramfs over TFTP; no iPXE on the way.
fn grub_boot(
    firmware: Firmware,
    mode: Mode,
    loaders: &'static [&'static str],
    files: [&str; 3],
    name: &str,
) -> Booted {
    let [arch, shim, grub] = files;
    let b = Boot {
        firmware,
        mode,
        source: Source::File,
        script: None,
        milestones: &[
            "Start PXE over IPv4",
            "NBP file downloaded",
            "netbootd: booting",
            "EFI stub",
            "Run /init",
        ],
        extra_args: loaders,
    }
    .run(name);
    let (_, offer) = b.first(&[
        "DISCOVER",
        &format!("arch={arch} "),
        "client=firmware",
        "-> OFFER",
    ]);
    assert!(offer.contains(&format!("file={shim}")), "{offer}");
    let (t_shim, _) = b.first(&[&format!("RRQ \"{shim}\""), ": complete"]);
    let (t_grub, _) = b.first(&[&format!("{grub}\""), ": complete"]);
    let (t_cfg, _) = b.first(&[&format!(": grub.cfg made for mac={VM_MAC}")]);
    let (t_kernel, _) = b.first(&["vmlinuz\"", ": complete"]);
    assert!(t_shim < t_grub && t_grub < t_cfg && t_cfg < t_kernel);
    b.first(&["initrd.img\"", ": complete"]);
    assert!(b.marker.contains("netbootd-test=profile"), "{}", b.marker);
    assert!(!b
        .server
        .iter()
        .any(|(_, l)| l.contains("client=ipxe") || l.contains("auto.ipxe")));
    b
}

/// Secure Boot enforced (OVMF with Microsoft's keys): Debian's Microsoft-signed shim, its
/// signed GRUB network image and its signed kernel, which reports Secure Boot on.
#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn uefi_secure_boot_runs_signed_shim_and_grub_with_the_machines_grub_cfg() {
    need_root_and("boot uefi secure boot", SECURE_BOOT_TOOLS);
    let loaders = &["--dhcp-loaders", "7=grub"];
    let files = ["7", "shimx64.efi", "grubx64.efi"];
    let b = grub_boot(
        Firmware::UefiSecureBoot,
        Mode::Reservation,
        loaders,
        files,
        "boot-uefi-secure-boot",
    );
    assert!(
        b.console.contains("Secure boot enabled"),
        "the kernel did not see Secure Boot on"
    );
}

/// The Secure Boot chain in proxy mode, beside udhcpd (addresses, and netbootd as its next
/// server: GRUB 2.06 takes its server from the site's reply, never from ProxyDHCP): the
/// firmware asks the boot server on UDP 4011 for shim; GRUB's address is udhcpd's, which names
/// no machine, so its `grub.cfg` asks again by GRUB's MAC and gets the machine's.
#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn uefi_secure_boot_grub_in_proxy_mode_finds_the_machine_by_mac() {
    need_root_and("boot uefi secure boot proxy", SECURE_BOOT_TOOLS);
    let loaders = &["--dhcp-loaders", "7=grub"];
    let files = ["7", "shimx64.efi", "grubx64.efi"];
    let b = grub_boot(
        Firmware::UefiSecureBoot,
        Mode::Proxy,
        loaders,
        files,
        "boot-uefi-secure-boot-proxy",
    );
    let (t_by_ip, _) = b.first(&["RRQ \"/grub/", "grub.cfg\": grub.cfg made for mac=-"]);
    let (t_by_mac, _) = b.first(&[&format!(
        "RRQ \"/grub/grub.cfg-01-{VM_MAC}\": grub.cfg made"
    )]);
    assert!(t_by_ip <= t_by_mac);
}

/// The same firmware refuses a binary nobody signed: Debian's ipxe.efi, fetched over TFTP,
/// never runs (proves the boot above passed a check that is on).
#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn uefi_secure_boot_refuses_an_unsigned_ipxe_efi() {
    need_root_and("boot uefi secure boot unsigned", SECURE_BOOT_TOOLS);
    let b = Boot {
        firmware: Firmware::UefiSecureBoot,
        mode: Mode::Reservation,
        source: Source::File,
        script: None,
        milestones: &[
            "Start PXE over IPv4",
            "NBP file downloaded",
            "Access Denied",
        ],
        extra_args: &[],
    }
    .run_until("boot-uefi-secure-boot-unsigned", "Access Denied");
    b.first(&["RRQ \"ipxe.efi\"", ": complete"]);
    assert!(!b.console.contains("iPXE initialising"), "{}", b.console);
    assert!(!b.server.iter().any(|(_, l)| l.contains("client=ipxe")));
}

const ARM64_TOOLS: &[&str] = &[
    "ip",
    "qemu-system-aarch64",
    "dnsmasq",
    "cpio",
    "apt-get",
    "dpkg-deb",
    "/usr/share/AAVMF/AAVMF_CODE.fd",
    "/usr/share/AAVMF/AAVMF_VARS.fd",
];

/// ARM64 (QEMU `virt`, TCG): AAVMF's PXE client (arch 11) gets Debian's arm64 shim, which
/// starts the signed arm64 GRUB network image; GRUB boots Debian's arm64 kernel (32 MB) and an
/// arm64 initramfs.
#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn arm64_uefi_boots_shim_and_grub_then_an_arm64_kernel() {
    need_root_and("boot arm64", ARM64_TOOLS);
    let loaders = &["--dhcp-loaders", "11=grub"];
    let files = ["11", "shimaa64.efi", "grubaa64.efi"];
    let b = grub_boot(
        Firmware::Arm64,
        Mode::Reservation,
        loaders,
        files,
        "boot-arm64",
    );
    assert!(b.marker.contains("machine=aarch64"), "{}", b.marker);
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn bios_boots_through_proxy_dhcp_beside_an_address_server() {
    need_root_and("boot bios proxy", TOOLS);
    let b = Boot {
        firmware: Firmware::Bios,
        mode: Mode::Proxy,
        source: Source::File,
        script: None,
        extra_args: &[],
        milestones: BIOS_MILESTONES,
    }
    .run("boot-bios-proxy");
    let (_, offer) = b.first(&["mode=proxy", "-> OFFER"]);
    assert!(
        !offer.contains(&format!("OFFER {VM_IP}")),
        "a proxy gives no address: {offer}"
    );
    // The address came from udhcpd (10.77.3.10-200).
    assert_served(&b, "netbootd-test=profile", "profile", "10.77.3.");
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn uefi_boots_through_proxy_dhcp_beside_an_address_server() {
    need_root_and("boot uefi proxy", TOOLS);
    let b = Boot {
        firmware: Firmware::Uefi,
        mode: Mode::Proxy,
        source: Source::File,
        script: None,
        extra_args: &[],
        milestones: UEFI_MILESTONES,
    }
    .run("boot-uefi-proxy");
    let (t_offer, _) = b.first(&["mode=proxy", "arch=7", "client=firmware", "-> OFFER"]);
    // No option 43 in the UEFI proxy offer: EDK2 asks the PXE boot server on UDP 4011.
    let (t_4011, ack) = b.first(&["REQUEST", "port=4011", "arch=7", "-> ACK"]);
    assert!(ack.contains("file=ipxe.efi"), "{ack}");
    let (t_tftp, _) = b.first(&["RRQ \"ipxe.efi\"", ": complete"]);
    assert!(t_offer < t_4011 && t_4011 < t_tftp);
    assert_served(&b, "netbootd-test=profile", "profile", "10.77.3.");
}

/// The README's demo, verbatim: it builds, boots a BIOS VM in its own lab and cleans up.
/// The checks of an SMD boot: the machine was offered its SMD address with its NID host name,
/// iPXE was given the BSS URL the template makes, and the BSS script booted netbootd's kernel.
fn assert_booted_from_smd(b: &Booted) {
    assert!(
        b.marker.contains("netbootd-test=bss"),
        "marker {:?}",
        b.marker
    );
    let (_, offer) = b.first(&[
        "DISCOVER",
        &format!("mac={VM_MAC}"),
        "client=ipxe",
        "-> OFFER",
    ]);
    assert!(offer.contains(&format!("OFFER {VM_IP}")), "{offer}");
    let bss = format!("file=http://{SRV_IP}:{SMD_PORT}/boot/v1/bootscript?mac={VM_MAC}");
    assert!(offer.contains(&bss), "{offer}");
    let kernel = std::fs::metadata(assets().join("vmlinuz")).unwrap().len();
    b.first(&[&format!("GET /assets/vmlinuz -> 200 {kernel} bytes")]);
    b.first(&["GET /assets/initrd.img -> 200"]);
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn bios_boots_a_machine_known_only_to_smd_with_its_bss_script() {
    need_root_and("boot bios from smd", &[TOOLS, &["python3"]].concat());
    let b = Boot {
        firmware: Firmware::Bios,
        mode: Mode::Reservation,
        source: Source::Smd,
        script: None,
        extra_args: &[],
        milestones: BIOS_MILESTONES,
    }
    .run("boot-bios-smd");
    assert_booted_from_smd(&b);
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn uefi_boots_a_machine_known_only_to_smd_with_its_bss_script() {
    need_root_and("boot uefi from smd", &[TOOLS, &["python3"]].concat());
    let b = Boot {
        firmware: Firmware::Uefi,
        mode: Mode::Reservation,
        source: Source::Smd,
        script: None,
        extra_args: &[],
        milestones: UEFI_MILESTONES,
    }
    .run("boot-uefi-smd");
    // coresmd gives arch 7 no boot file; netbootd gives it ipxe.efi.
    let (_, offer) = b.first(&["DISCOVER", "arch=7", "client=firmware", "-> OFFER"]);
    assert!(offer.contains("file=ipxe.efi"), "{offer}");
    b.first(&["RRQ \"ipxe.efi\"", ": complete"]);
    assert_booted_from_smd(&b);
}

#[test]
#[ignore = "needs root, network namespaces and the Kubernetes peers: run tests/run.sh"]
fn bios_boots_a_machine_known_only_to_kubernetes_from_its_hardware_object() {
    need_root_and(
        "boot bios from kubernetes",
        &[TOOLS, &["python3", "openssl"]].concat(),
    );
    need_peers("boot bios from kubernetes");
    let b = Boot {
        firmware: Firmware::Bios,
        mode: Mode::Reservation,
        source: Source::Kube,
        script: None,
        extra_args: &[],
        milestones: BIOS_MILESTONES,
    }
    .run("boot-bios-kube");
    let (_, offer) = b.first(&["DISCOVER", &format!("mac={VM_MAC}"), "-> OFFER"]);
    assert!(offer.contains(&format!("OFFER {VM_IP}")), "{offer}");
    assert_served(&b, "netbootd-test=kube", "inline", VM_IP);
}

/// Two boots from the pool ended in the reboot script; the third, once known, in the profile.
fn assert_rebooted_until_known(b: &Booted) {
    let scripts: Vec<&str> = b
        .server
        .iter()
        .map(|(_, l)| l.as_str())
        .filter(|l| l.contains("/unknown.ipxe -> 200") && l.contains("script reboot"))
        .collect();
    assert!(scripts.len() >= 2, "{scripts:?}");
    let pool_acks = b
        .server
        .iter()
        .filter(|(_, l)| l.contains(&format!("mac={VM_MAC}")) && l.contains("-> ACK 10.77.9.100"))
        .count();
    assert!(pool_acks >= 2, "{pool_acks} pool ACKs");
    let (t_reboot, _) = b.first(&["/unknown.ipxe -> 200"]);
    let (t_known, _) = b.first(&[&format!("mac={VM_MAC}"), &format!("-> ACK {VM_IP}")]);
    assert!(t_reboot < t_known);
    b.first(&[&format!("pool: {VM_MAC} is in the inventory now")]);
    assert_served(b, "netbootd-test=profile", "profile", VM_IP);
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn bios_unknown_machine_reboots_from_the_pool_until_it_is_known() {
    need_root_and("boot bios pool", TOOLS);
    let b = Boot {
        firmware: Firmware::Bios,
        mode: Mode::Reservation,
        source: Source::PoolThenFile,
        script: None,
        extra_args: &[],
        milestones: BIOS_MILESTONES,
    }
    .run("boot-bios-pool");
    assert_rebooted_until_known(&b);
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn uefi_unknown_machine_reboots_from_the_pool_until_it_is_known() {
    need_root_and("boot uefi pool", TOOLS);
    let b = Boot {
        firmware: Firmware::Uefi,
        mode: Mode::Reservation,
        source: Source::PoolThenFile,
        script: None,
        extra_args: &[],
        milestones: UEFI_MILESTONES,
    }
    .run("boot-uefi-pool");
    // The firmware got iPXE from the pool (its binary for arch 7) before the reboot script.
    let (_, offer) = b.first(&[
        "DISCOVER",
        "arch=7",
        "client=firmware",
        "-> OFFER 10.77.9.100",
    ]);
    assert!(offer.contains("file=ipxe.efi"), "{offer}");
    assert_rebooted_until_known(&b);
}

#[test]
#[ignore = "needs root and network namespaces: run tests/run.sh"]
fn the_demo_boots_a_vm_and_cleans_up() {
    need_root_and("boot demo", TOOLS);
    let _one_at_a_time = BOOTS.lock().unwrap_or_else(|p| p.into_inner());
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/demo/boot-a-vm.sh");
    let out = Command::new("timeout")
        .args(["-k", "5", "600"])
        .arg(&demo)
        .stdin(Stdio::null())
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("== bios: power-on to NETBOOT-OK in") && stdout.contains("script profile"),
        "{stdout}"
    );
    let namespaces = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&namespaces.stdout).contains("nbdemo-"),
        "the demo left namespaces behind"
    );
}
