// qpuos demo circuit: an 8-qubit QFT, a Toffoli-based adder step, a user-defined
// gate, and final measurements. Written for qpuos (CC0-1.0).
OPENQASM 2.0;
include "qelib1.inc";

// a controlled-phase ladder step, defined once and used below
gate phase_step(theta) a, b {
  cp(theta) a, b;
  rz(theta / 2) b;
}

qreg data[8];
qreg work[2];
creg result[8];

h data;
// quantum Fourier transform on data[0..7]
h data[0];
phase_step(pi/2) data[1], data[0];
phase_step(pi/4) data[2], data[0];
phase_step(pi/8) data[3], data[0];
h data[1];
phase_step(pi/2) data[2], data[1];
phase_step(pi/4) data[3], data[1];
h data[2];
phase_step(pi/2) data[3], data[2];
h data[3];
cx data[3], data[4];
cx data[4], data[5];
cx data[5], data[6];
cx data[6], data[7];
// carry logic on the work register
ccx data[0], data[7], work[0];
ccx data[1], data[6], work[1];
cswap work[0], data[2], data[5];
rzz(0.3 * pi) work[0], work[1];
barrier data, work;
measure data -> result;
