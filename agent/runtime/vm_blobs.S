/*
 * The microVM guest's init and the VMM launcher (guest/init.c, guest/vmm.c),
 * static executables linked into the binary: the runtime packs the first
 * into each VM's initramfs and mounts the second into each VM's container
 * (runtime_int.h: hc_vm_*). The Makefile passes their paths.
 */
	.section .rodata
	.balign 16
	.globl hc_vm_init_start
hc_vm_init_start:
	.incbin VM_INIT_FILE
	.globl hc_vm_init_end
hc_vm_init_end:
	.byte 0

	.balign 16
	.globl hc_vm_vmm_start
hc_vm_vmm_start:
	.incbin VM_VMM_FILE
	.globl hc_vm_vmm_end
hc_vm_vmm_end:
	.byte 0

	.section .note.GNU-stack,"",@progbits
