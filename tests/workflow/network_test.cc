// Production over the network: the demo upgrade with its blob store on a
// read-only sshfs mount of a directory served by an sshd on 127.0.0.1 (the
// mirror of the database on top), and refresh-prod.sh from HOST:PATH.
#include <unistd.h>

#include "tests/workflow/workflow_fixture.h"

namespace workflow {
namespace {

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// The remote blob store mounted read-only with sshfs; unmounted on exit.
class SshfsMount {
 public:
  SshfsMount(const SshServer& ssh, const std::string& remote, const std::string& mnt) : mnt_(mnt) {
    std::vector<std::string> argv = {"sshfs", "-o", "ro", "-p", std::to_string(ssh.port())};
    for (const auto& o : ssh.ssh_options()) argv.push_back(o);
    argv.push_back("root@127.0.0.1:" + remote);
    argv.push_back(mnt);
    RunResult r = run(argv, {.cwd = "", .timeout = 60s});
    if (r.exit_code != 0 || !is_mounted(mnt)) {
      throw std::runtime_error("sshfs failed: " + r.describe() + "\nsshd log:\n" + ssh.log());
    }
  }
  ~SshfsMount() {
    if (is_mounted(mnt_)) {
      RunResult r = run({"fusermount3", "-u", mnt_}, {.cwd = "", .timeout = 30s});
      if (r.exit_code != 0) force_unmount(mnt_);
    }
  }
  SshfsMount(const SshfsMount&) = delete;
  SshfsMount& operator=(const SshfsMount&) = delete;

 private:
  std::string mnt_;
};

TEST(Network, DemoUpgradeWithTheBlobLowerOnAReadOnlySshfsMount) {
  const int kObjects = 20000;
  const std::string& prod = demo_prod(kObjects);
  TempDir tmp("wf-sshfs");
  // Production's blob store (served over ssh) and the local mirror of its
  // database (the top lower).
  const std::string served = tmp.sub("served");
  copy_dir(prod, served);
  run({"rm", "-rf", served + "/var/filestorage"});
  const std::string mirror = tmp.mkdir("mirror/var");
  copy_dir(prod + "/var/filestorage", mirror + "/filestorage");
  Manifest served_before = Manifest::take(served);
  Manifest mirror_before = Manifest::take(tmp.sub("mirror"));

  SshServer ssh(tmp.sub("ssh"));
  const std::string blobs = tmp.mkdir("blobs");
  SshfsMount sshfs(ssh, served, blobs);
  ASSERT_EQ(list_dir(blobs + "/var/blobstorage").size(), kObjects / 20 + 1u);  // + .layout
  // Read-only: the network lower refuses writes by itself.
  EXPECT_NE(::access((blobs + "/var/blobstorage").c_str(), W_OK), 0);

  const std::string ws = tmp.mkdir("ws");
  init_demo_workspace(ws, {tmp.sub("mirror"), blobs});
  RunResult r = rehearse(ws, {"-v", "run"}, 600s);
  ASSERT_EQ(r.exit_code, 0) << r.describe() << "\nsshd log:\n" << ssh.log();
  EXPECT_TRUE(contains(r.out + r.err, "verified: 20000 objects and 1000 blobs"))
      << (r.out.size() > 3000 ? r.out.substr(r.out.size() - 3000) : r.out);
  const std::string db = demo_db(ws + "/mnt");
  EXPECT_EQ(query(db, "SELECT count(*) FROM content_text"), "20000");
  EXPECT_EQ(query(db, "SELECT count(*) FROM content WHERE blob LIKE '__/__/%.blob'"), "1000");
  // A QA command against the rehearsal reads migrated blobs through both lowers.
  RunResult qa = rehearse(ws, {"exec", "--", "sh", "-c", "ls var/blobstorage/*/*/*.blob | wc -l"});
  EXPECT_EQ(qa.exit_code, 0) << qa.describe();
  EXPECT_EQ(qa.out, "1000\n");
  EXPECT_EQ(rehearse(ws, {"umount"}).exit_code, 0);
  EXPECT_EQ(diff(served_before, Manifest::take(served)), "") << "the remote blob store changed";
  EXPECT_EQ(diff(mirror_before, Manifest::take(tmp.sub("mirror"))), "") << "the mirror changed";
}

// A number of the lower cache in `cowfs layers --json` of a mounted store.
uint64_t lower_cache_stat(const std::string& store, const std::string& key) {
  RunResult r = run({cowfs_bin(), "layers", "--store", store, "--json"});
  const std::string at = "\"" + key + "\":";
  const size_t cache = r.out.find("\"lower_cache\":");
  const size_t pos = cache == std::string::npos ? cache : r.out.find(at, cache);
  if (r.exit_code != 0 || pos == std::string::npos) {
    throw std::runtime_error("no lower cache " + key + " in cowfs layers: " + r.describe());
  }
  return std::stoull(r.out.substr(pos + at.size()));
}

// cowfs over an sshfs lower, with no --remote-lower: the lower is known to
// be remote by its filesystem type, and its reads go through the cache,
// which a new sshfs mount (new inode numbers) and a new store still use.
TEST(Network, AnSshfsLowerIsReadThroughTheLowerCache) {
  TempDir tmp("wf-sshfs-cache");
  const std::string served = tmp.mkdir("served");
  const std::string big = pattern((3u << 20) + 777, 5);
  write_file(served + "/big", big);
  write_file(served + "/small", "hello\n");
  const Manifest before = Manifest::take(served);
  SshServer ssh(tmp.sub("ssh"));
  const std::string remote = tmp.mkdir("remote");
  const std::string cache = tmp.sub("cache");
  auto read_through = [&](const std::string& store) {
    SshfsMount sshfs(ssh, served, remote);
    CowfsMount m({tmp.sub(store), {remote}, tmp.mkdir("mnt"), {"--lower-cache", cache}, {}});
    EXPECT_EQ(first_difference(big, read_file(m.spec().mountpoint + "/big")), "");
    EXPECT_EQ(read_file(m.spec().mountpoint + "/small"), "hello\n");
    const uint64_t fetched = lower_cache_stat(m.spec().store, "fetched_bytes");
    EXPECT_EQ(m.unmount(), "");
    return fetched;
  };
  EXPECT_EQ(read_through("store"), big.size() + 6) << "cold: everything from the network";
  EXPECT_EQ(read_through("store"), 0u) << "warm, after a remount of sshfs and of cowfs";
  EXPECT_EQ(read_through("store2"), 0u) << "warm, on a new store";
  EXPECT_EQ(diff(before, Manifest::take(served)), "") << "the served directory changed";
}

TEST(Network, RefreshOverSshFromHostPath) {
  TempDir tmp("wf-ssh-refresh");
  const std::string src = tmp.sub("prod");
  copy_dir(demo_prod(2000), src);
  SshServer ssh(tmp.sub("ssh"));
  const std::string mirror = tmp.sub("mirror");
  setenv("REHEARSE", rehearse_bin().c_str(), 1);
  RunResult r = run({repo("scripts/refresh-prod.sh"), "--from", "root@127.0.0.1:" + src, "--to",
                     mirror, "--rsh", ssh.ssh_command(), "--compress"},
                    {.cwd = "", .timeout = 300s});
  ASSERT_EQ(r.exit_code, 0) << r.describe() << "\nsshd log:\n" << ssh.log();
  EXPECT_EQ(diff(Manifest::take(src), Manifest::take(mirror), kSemantic), "");

  // A wrong path on the host and an unreachable host are told apart.
  RunResult wrong =
      run({repo("scripts/refresh-prod.sh"), "--from", "root@127.0.0.1:" + tmp.sub("nope"), "--to",
           mirror, "--rsh", ssh.ssh_command()},
          {.cwd = "", .timeout = 60s});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_TRUE(contains(wrong.err, "is not a directory on root@127.0.0.1")) << wrong.describe();
  std::string bad_port = ssh.ssh_command();
  bad_port.replace(bad_port.find(std::to_string(ssh.port())), std::to_string(ssh.port()).size(),
                   std::to_string(free_port()));
  RunResult unreachable = run({repo("scripts/refresh-prod.sh"), "--from", "root@127.0.0.1:" + src,
                               "--to", mirror, "--rsh", bad_port},
                              {.cwd = "", .timeout = 60s});
  EXPECT_EQ(unreachable.exit_code, 1);
  EXPECT_TRUE(contains(unreachable.err, "cannot reach root@127.0.0.1 over ssh"))
      << unreachable.describe();
  EXPECT_EQ(diff(Manifest::take(src), Manifest::take(mirror), kSemantic), "");
}

}  // namespace
}  // namespace workflow
