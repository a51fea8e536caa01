// `tianhe simulate --protocol modbus`: starts local Modbus TCP servers (modbus_server.h) for N
// devices and prints their addresses and a config snippet that polls them.
#pragma once

#include <cstdint>
#include <string>

namespace tianhe::protocols::modbus {

/// The config (a model, its [[devices]] range and the [[protocols.modbus.devices]] entries) that
/// polls `devices` simulated devices from id `first` at `address` ("127.0.0.1:5020"), unit ids
/// 1..247 in turn, every `interval` ("1s").
std::string simulator_config(const std::string& address, uint64_t first, uint64_t devices,
                             const std::string& interval);

/// The command; argv[1] is "simulate" and `--protocol modbus` is already removed.
int cmd_simulate(int argc, char** argv);

}  // namespace tianhe::protocols::modbus
