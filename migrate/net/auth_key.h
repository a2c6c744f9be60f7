// The pre-shared key of `criu serve`, `criu migrate` and the page server (--auth-key FILE).
//
// The file holds the secret itself (any bytes: `head -c 32 /dev/urandom > key` is the
// intended way to make one). Both ends derive everything else from it (session.h), so the
// file must be private: one readable by group or others is refused, as ssh refuses such a
// private key, because anyone who can read it can make this host restore their process.
#pragma once

#include <string>
#include <vector>

#include "criu/core/error.h"

namespace criu {

class AuthKey {
public:
    // At least 16 bytes of secret (128 bits, if the file came from a random source), at most
    // 4096. The error names the file and what is wrong with it.
    static Expected<AuthKey> load(const std::string& path);
    // For tests: a key from bytes (same length rules, no file checks).
    static Expected<AuthKey> from_bytes(std::vector<uint8_t> bytes);
    // The page server without --auth-key (CRIU has no authentication there): a fixed,
    // public key. Messages are then only protected against accidental corruption, not
    // against anyone on the network; the page server says so loudly.
    static AuthKey insecure();

    const std::vector<uint8_t>& bytes() const { return bytes_; }
    bool is_insecure() const { return insecure_; }

    static constexpr size_t kMinBytes = 16;
    static constexpr size_t kMaxBytes = 4096;

private:
    std::vector<uint8_t> bytes_;
    bool insecure_ = false;
};

}  // namespace criu
