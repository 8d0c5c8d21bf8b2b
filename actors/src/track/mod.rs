//! Tracked objects other than scripts and interfaces, as keepalived 2.2.7 has them:
//! a number in a file ([`file`]: `track_file`) and the processes running on the box
//! ([`process`]: `vrrp_track_process`, fed by the kernel's process events connector,
//! [`proc_event`], through [`proc_io`]). Pure cores, I/O apart.

pub mod file;
pub mod proc_event;
pub mod proc_io;
pub mod process;
