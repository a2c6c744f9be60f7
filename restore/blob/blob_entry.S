/* Entry point and the two pieces of the restorer blob that C cannot express: starting a thread
 * on a fresh stack and jumping into rt_sigreturn with rsp at a prebuilt frame. */

    .section .text.entry, "ax"
    .globl blob_start
    .type blob_start, @function
/* Offset 0 of the blob. The restored child calls it with %rdi = struct blob_args* and %rsp at
 * the top of the main blob stack (16-byte aligned before the call). */
blob_start:
    jmp blob_main
    .size blob_start, .-blob_start

/* At BLOB_SYSCALL_INSN_OFFSET: a bare syscall instruction criu points a stopped thread at to
 * run one syscall (munmap of this area) after every thread has left the blob. */
    .balign 8
    .globl blob_syscall_insn
blob_syscall_insn:
    syscall
    ud2

    .text
    .globl blob_clone3_thread
    .type blob_clone3_thread, @function
/* long blob_clone3_thread(struct blob_clone_args *ca, uint64_t size,
 *                         void (*fn)(void *, uint64_t), void *arg, uint64_t idx)
 * The child of clone3 gets a copy of every register but %rax (0), %rcx and %r11 (clobbered by
 * syscall) and %rsp (the new stack), so fn/arg/idx travel in caller-saved registers that the
 * syscall leaves alone. */
blob_clone3_thread:
    mov %rdx, %r9       /* fn */
    mov %rcx, %r10      /* arg */
    mov $435, %eax      /* __NR_clone3 */
    syscall
    test %rax, %rax
    jnz 1f
    xor %ebp, %ebp
    and $-16, %rsp
    mov %r10, %rdi
    mov %r8, %rsi
    call *%r9
    ud2
1:  ret
    .size blob_clone3_thread, .-blob_clone3_thread

    .globl blob_sigreturn
    .type blob_sigreturn, @function
/* void blob_sigreturn(uint64_t frame): rt_sigreturn finds its frame at rsp - 8
 * (arch/x86/kernel/signal_64.c), i.e. just past pretcode. */
blob_sigreturn:
    lea 8(%rdi), %rsp
    mov $15, %eax       /* __NR_rt_sigreturn */
    syscall
    ud2
    .size blob_sigreturn, .-blob_sigreturn

    .section .note.GNU-stack, "", @progbits
