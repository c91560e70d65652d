// bench/peers/grpc_peer.cc - duct-bench's echo with gRPC C++ over a Unix
// socket: the synchronous server API in its own process, synchronous stubs
// on one channel that the client threads share (see client_open for why
// one channel).
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include "echo.grpc.pb.h"
#include "peers.h"
#include "peers_internal.h"

namespace {

// gRPC's limits are 4 MiB received and unlimited sent, on both sides, so
// the largest echo (1 MiB and a few bytes of framing) needs no change.
// The bench still states its largest message here, so a larger payload
// fails at the limit's check rather than somewhere inside gRPC.
constexpr int kMaxMessage = 4 * 1024 * 1024;

class Echoer final : public duct_peer::Echoer::Service {
public:
  grpc::Status Echo(grpc::ServerContext *, const duct_peer::Blob *req,
                    duct_peer::Blob *reply) override {
    // One copy more than duct's handler, which borrows the request's
    // bytes for the reply: the C++ API owns every message's strings, and
    // a copy is what a gRPC echo service writes.
    reply->set_data(req->data());
    return grpc::Status::OK;
  }
  grpc::Status Quit(grpc::ServerContext *, const duct_peer::Empty *,
                    duct_peer::Empty *) override {
    std::lock_guard<std::mutex> lock(mu_);
    quit_ = true;
    cv_.notify_all();
    return grpc::Status::OK;
  }
  void wait_for_quit() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return quit_; });
  }

private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool quit_ = false;
};

int server_main(const char *address) {
  Echoer service;
  grpc::ServerBuilder b;
  b.AddListeningPort(std::string("unix:") + address, grpc::InsecureServerCredentials());
  b.SetMaxReceiveMessageSize(kMaxMessage);
  b.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  if (!server) {
    std::fprintf(stderr, "duct-bench grpc server: cannot listen on unix:%s\n", address);
    return 2;
  }
  service.wait_for_quit();
  // Shutdown waits for the Quit call itself to finish sending its reply.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}

struct Peer {
  pid_t server = -1;
  char path[108];
  std::shared_ptr<grpc::Channel> channel;
};

struct Client {
  std::unique_ptr<duct_peer::Echoer::Stub> stub;
  // The request is built once and reused while the caller passes the same
  // bytes, as duct's client sets its Blob once before the loop; only what
  // each call needs (a ClientContext, the call) is inside the timed part.
  const uint8_t *req_src = nullptr;
  size_t req_len = 0;
  duct_peer::Blob req, reply;
};

void *start(const char *self, const char *tag) {
  auto *p = new Peer;
  peer_path(p->path, sizeof p->path, tag, "grpc.sock");
  unlink(p->path);
  const char *argv[] = {self, "--peer-server", "grpc-uds", p->path, nullptr};
  p->server = peer_spawn(argv);
  if (p->server < 0) {
    delete p;
    return nullptr;
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessage);
  p->channel = grpc::CreateCustomChannel(std::string("unix:") + p->path,
                                         grpc::InsecureChannelCredentials(), args);
  // The server may take a moment to listen; a channel in backoff reconnects
  // by itself, so waiting for the connected state is enough.
  if (!p->channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(20))) {
    std::fprintf(stderr, "duct-bench: grpc-uds: cannot connect to unix:%s\n", p->path);
    peer_reap(p->server, 0);
    unlink(p->path);
    delete p;
    return nullptr;
  }
  return p;
}

// One stub per thread on the shared channel. A channel is one HTTP/2
// connection here, and gRPC's advice to spread load over several channels
// is about the 100 concurrent streams a connection allows; four threads
// with one call each in flight are far below that, and sharing one channel
// is how duct's bench (and a gRPC application) uses its channel.
void *client_open(void *peer) {
  auto *c = new Client;
  c->stub = duct_peer::Echoer::NewStub(static_cast<Peer *>(peer)->channel);
  return c;
}

int echo(void *client, const uint8_t *req, size_t len, const uint8_t **reply, size_t *reply_len) {
  auto *c = static_cast<Client *>(client);
  if (req != c->req_src || len != c->req_len) {
    c->req.set_data(req, len);
    c->req_src = req;
    c->req_len = len;
  }
  grpc::ClientContext ctx; // one per call: gRPC does not allow reusing it
  grpc::Status st = c->stub->Echo(&ctx, c->req, &c->reply);
  if (!st.ok()) {
    std::fprintf(stderr, "duct-bench: grpc-uds: Echo: %s\n", st.error_message().c_str());
    return -1;
  }
  *reply = reinterpret_cast<const uint8_t *>(c->reply.data().data());
  *reply_len = c->reply.data().size();
  return 0;
}

void client_close(void *client) { delete static_cast<Client *>(client); }

int stop(void *peer) {
  auto *p = static_cast<Peer *>(peer);
  auto stub = duct_peer::Echoer::NewStub(p->channel);
  grpc::ClientContext ctx;
  duct_peer::Empty e, r;
  grpc::Status st = stub->Quit(&ctx, e, &r);
  int rc = peer_reap(p->server, 10000);
  unlink(p->path);
  delete p;
  return st.ok() && rc == 0 ? 0 : -1;
}

} // namespace

extern "C" const bench_peer bench_peer_grpc = {"grpc-uds", start,        server_main, client_open,
                                               echo,       client_close, stop};
