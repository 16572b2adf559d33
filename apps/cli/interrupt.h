// Ctrl-C and SIGTERM for the long-running subcommands: the first signal only asks for a stop (the
// run finishes the frames it has, closes its output and prints its summary), a second one ends
// the process at once (the default action is restored by the first). The preview window's quit
// key asks for the same stop.
#pragma once

namespace streamdiff::cli {

// Installs the handlers for SIGINT and SIGTERM (once per process).
void install_interrupt_handlers();
// True once a stop was asked for (a signal, or request_stop()).
bool stop_requested();
// The signal that asked for the stop (SIGINT, SIGTERM), or 0 for request_stop() / none.
int stop_signal();
void request_stop();
// The exit code of an interrupted run: 128 + the signal, 130 (as Ctrl-C) for request_stop().
int interrupted_exit_code();

}  // namespace streamdiff::cli
