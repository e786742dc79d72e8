/*
 * JNI glue between org.rmqraft (Java) and librmqraft (C ABI).
 *
 * Native library threads that call back into Java (role listeners, async-append and
 * async-send completions) attach to the JVM lazily, as daemon threads named after the native thread
 * ("rmqraft-cb:<name>"), and detach when the native thread ends, through the destructor of
 * a pthread key set on attach.
 *
 * Handles cross as jlong. Strings arrive as UTF-8 byte arrays and are copied into
 * NUL-terminated buffers. Every failure becomes an org.rmqraft.RmqraftException carrying
 * the result code and rmqraft_last_error().
 */
#define _GNU_SOURCE
#include <jni.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rmqraft.h"

static JavaVM *g_vm;
static pthread_key_t g_detach_key;
static jclass g_group_class;          /* org.rmqraft.Group */
static jclass g_exception_class;      /* org.rmqraft.RmqraftException */
static jmethodID g_exception_ctor;    /* (ILjava/lang/String;)V */
static jmethodID g_complete_append;   /* Group.completeAppend */
static jmethodID g_dispatch_role;     /* Group.dispatchRole */

static void detach_at_thread_exit(void *vm) {
    JavaVM *jvm = vm;
    (*jvm)->DetachCurrentThread(jvm);
}

/* The JNIEnv of the calling native thread, attaching it as a daemon on first use. */
static JNIEnv *callback_env(void) {
    JNIEnv *env = NULL;
    char native_name[16] = "";
    char java_name[32];
    JavaVMAttachArgs args;
    jint rc = (*g_vm)->GetEnv(g_vm, (void **)&env, JNI_VERSION_1_8);
    if (rc == JNI_OK) return env;
    if (rc != JNI_EDETACHED) return NULL;
    pthread_getname_np(pthread_self(), native_name, sizeof native_name);
    snprintf(java_name, sizeof java_name, "rmqraft-cb:%s", native_name);
    args.version = JNI_VERSION_1_8;
    args.name = java_name;
    args.group = NULL;
    if ((*g_vm)->AttachCurrentThreadAsDaemon(g_vm, (void **)&env, &args) != JNI_OK) return NULL;
    if (pthread_setspecific(g_detach_key, g_vm) != 0) {
        fprintf(stderr, "rmqraft_jni: cannot arrange detach at thread exit\n");
    }
    return env;
}

/* Reports and clears a Java exception thrown inside a callback: it has nowhere to go. */
static void drop_pending_exception(JNIEnv *env) {
    if ((*env)->ExceptionCheck(env)) {
        (*env)->ExceptionDescribe(env);
        (*env)->ExceptionClear(env);
    }
}

static jclass global_class(JNIEnv *env, const char *name) {
    jclass local = (*env)->FindClass(env, name);
    jclass global;
    if (!local) return NULL;
    global = (*env)->NewGlobalRef(env, local);
    (*env)->DeleteLocalRef(env, local);
    return global;
}

static int message_ids(JNIEnv *env);

JNIEXPORT jint JNICALL JNI_OnLoad(JavaVM *vm, void *reserved) {
    JNIEnv *env;
    (void)reserved;
    g_vm = vm;
    if ((*vm)->GetEnv(vm, (void **)&env, JNI_VERSION_1_8) != JNI_OK) return JNI_ERR;
    if (pthread_key_create(&g_detach_key, detach_at_thread_exit) != 0) return JNI_ERR;
    g_group_class = global_class(env, "org/rmqraft/Group");
    g_exception_class = global_class(env, "org/rmqraft/RmqraftException");
    if (!g_group_class || !g_exception_class) return JNI_ERR;
    g_exception_ctor = (*env)->GetMethodID(env, g_exception_class, "<init>", "(ILjava/lang/String;)V");
    g_complete_append = (*env)->GetStaticMethodID(env, g_group_class, "completeAppend",
                                                  "(Ljava/lang/Object;IJJJLjava/lang/String;)V");
    g_dispatch_role =
        (*env)->GetStaticMethodID(env, g_group_class, "dispatchRole", "(Lorg/rmqraft/RoleListener;IJI)V");
    if (!g_exception_ctor || !g_complete_append || !g_dispatch_role) return JNI_ERR;
    if (!message_ids(env)) return JNI_ERR;
    return JNI_VERSION_1_8;
}

/* Throws RmqraftException(code, detail of this thread's last failure). */
static void throw_result(JNIEnv *env, rmqraft_result r) {
    char detail[1024];
    jstring message;
    jobject ex;
    rmqraft_last_error(detail, sizeof detail);
    message = (*env)->NewStringUTF(env, detail);
    if (!message) return; /* OutOfMemoryError pending */
    ex = (*env)->NewObject(env, g_exception_class, g_exception_ctor, (jint)r, message);
    if (ex) (*env)->Throw(env, ex);
}

static void throw_npe(JNIEnv *env, const char *what) {
    jclass npe = (*env)->FindClass(env, "java/lang/NullPointerException");
    if (npe) (*env)->ThrowNew(env, npe, what);
}

/* A NUL-terminated copy of a UTF-8 byte array; NULL (with an exception) on failure. */
static char *c_string(JNIEnv *env, jbyteArray bytes, const char *what) {
    jsize len;
    char *s;
    if (!bytes) {
        throw_npe(env, what);
        return NULL;
    }
    len = (*env)->GetArrayLength(env, bytes);
    s = malloc((size_t)len + 1);
    if (!s) {
        throw_result(env, RMQRAFT_ERR_IO);
        return NULL;
    }
    (*env)->GetByteArrayRegion(env, bytes, 0, len, (jbyte *)s);
    s[len] = '\0';
    return s;
}

/* A heap copy of a byte array (at least one byte allocated). */
static uint8_t *c_bytes(JNIEnv *env, jbyteArray bytes, size_t *len) {
    jsize n = (*env)->GetArrayLength(env, bytes);
    uint8_t *data = malloc((size_t)n + 1);
    if (!data) return NULL;
    (*env)->GetByteArrayRegion(env, bytes, 0, n, (jbyte *)data);
    *len = (size_t)n;
    return data;
}

static uint32_t timeout_arg(jlong ms) {
    if (ms < 0) return 0;
    return ms > (jlong)UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

static jlongArray long_array(JNIEnv *env, const jlong *values, jsize n) {
    jlongArray a = (*env)->NewLongArray(env, n);
    if (a) (*env)->SetLongArrayRegion(env, a, 0, n, values);
    return a;
}

#define HANDLE(type, h) ((type *)(intptr_t)(h))

JNIEXPORT jint JNICALL Java_org_rmqraft_Native_version(JNIEnv *env, jclass cls) {
    (void)env;
    (void)cls;
    return (jint)rmqraft_version();
}

JNIEXPORT jstring JNICALL Java_org_rmqraft_Native_versionString(JNIEnv *env, jclass cls) {
    (void)cls;
    return (*env)->NewStringUTF(env, rmqraft_version_string());
}

JNIEXPORT jlong JNICALL Java_org_rmqraft_Native_engineOpen(JNIEnv *env, jclass cls, jbyteArray properties) {
    rmqraft_engine *engine = NULL;
    rmqraft_result r;
    char *props = c_string(env, properties, "properties");
    (void)cls;
    if (!props) return 0;
    r = rmqraft_engine_open(props, &engine);
    free(props);
    if (r != RMQRAFT_OK) {
        throw_result(env, r);
        return 0;
    }
    return (jlong)(intptr_t)engine;
}

JNIEXPORT void JNICALL Java_org_rmqraft_Native_engineClose(JNIEnv *env, jclass cls, jlong engine) {
    (void)env;
    (void)cls;
    rmqraft_engine_close(HANDLE(rmqraft_engine, engine));
}

/* What a Java Group's handle points to: the C handle and the role listener it owns. */
typedef struct jni_group {
    rmqraft_group *group;
    jobject role_listener; /* global reference, or NULL */
} jni_group;

JNIEXPORT jlong JNICALL Java_org_rmqraft_Native_groupOpen(JNIEnv *env, jclass cls, jlong engine, jbyteArray properties) {
    jni_group *jg;
    rmqraft_result r;
    char *props = c_string(env, properties, "properties");
    (void)cls;
    if (!props) return 0;
    jg = calloc(1, sizeof *jg);
    if (!jg) {
        free(props);
        throw_result(env, RMQRAFT_ERR_IO);
        return 0;
    }
    r = rmqraft_group_open(HANDLE(rmqraft_engine, engine), props, &jg->group);
    free(props);
    if (r != RMQRAFT_OK) {
        free(jg);
        throw_result(env, r);
        return 0;
    }
    return (jlong)(intptr_t)jg;
}

JNIEXPORT void JNICALL Java_org_rmqraft_Native_groupClose(JNIEnv *env, jclass cls, jlong group) {
    jni_group *jg = HANDLE(jni_group, group);
    (void)cls;
    if (!jg) return;
    rmqraft_group_close(jg->group); /* no listener runs once this returns */
    if (jg->role_listener) (*env)->DeleteGlobalRef(env, jg->role_listener);
    free(jg);
}

JNIEXPORT jlongArray JNICALL Java_org_rmqraft_Native_append(JNIEnv *env, jclass cls, jlong group, jbyteArray data,
                                                            jlong timeout_ms) {
    jni_group *jg = HANDLE(jni_group, group);
    rmqraft_entry_meta meta;
    rmqraft_result r;
    size_t len = 0;
    uint8_t *bytes = c_bytes(env, data, &len);
    jlong out[3];
    (void)cls;
    if (!bytes) {
        throw_result(env, RMQRAFT_ERR_IO);
        return NULL;
    }
    r = rmqraft_group_append(jg->group, bytes, len, timeout_arg(timeout_ms), &meta);
    free(bytes);
    if (r != RMQRAFT_OK) {
        throw_result(env, r);
        return NULL;
    }
    out[0] = (jlong)meta.index;
    out[1] = (jlong)meta.term;
    out[2] = (jlong)meta.pos;
    return long_array(env, out, 3);
}

JNIEXPORT jlongArray JNICALL Java_org_rmqraft_Native_appendIdempotent(JNIEnv *env, jclass cls, jlong group,
                                                                      jlong producer_id, jlong sequence,
                                                                      jbyteArray data, jlong timeout_ms) {
    jni_group *jg = HANDLE(jni_group, group);
    rmqraft_entry_meta meta;
    rmqraft_result r;
    size_t len = 0;
    uint8_t *bytes = c_bytes(env, data, &len);
    jlong out[3];
    (void)cls;
    if (!bytes) {
        throw_result(env, RMQRAFT_ERR_IO);
        return NULL;
    }
    r = rmqraft_group_append_idempotent(jg->group, (uint64_t)producer_id, (uint64_t)sequence, bytes, len,
                                        timeout_arg(timeout_ms), &meta);
    free(bytes);
    if (r != RMQRAFT_OK) {
        throw_result(env, r);
        return NULL;
    }
    out[0] = (jlong)meta.index;
    out[1] = (jlong)meta.term;
    out[2] = (jlong)meta.pos;
    return long_array(env, out, 3);
}

/* Runs on the library thread that completes appends; userdata is a global ref to the future. */
static void on_append_done(void *userdata, rmqraft_result result, const rmqraft_entry_meta *meta) {
    jobject future = userdata;
    JNIEnv *env = callback_env();
    jstring name;
    if (!env) {
        fprintf(stderr, "rmqraft_jni: cannot attach a callback thread; an async append is lost\n");
        return;
    }
    name = (*env)->NewStringUTF(env, rmqraft_result_name(result));
    (*env)->CallStaticVoidMethod(env, g_group_class, g_complete_append, future, (jint)result, (jlong)meta->index,
                                 (jlong)meta->term, (jlong)meta->pos, name);
    drop_pending_exception(env);
    if (name) (*env)->DeleteLocalRef(env, name);
    (*env)->DeleteGlobalRef(env, future);
}

JNIEXPORT void JNICALL Java_org_rmqraft_Native_appendAsync(JNIEnv *env, jclass cls, jlong group, jbyteArray data,
                                                           jobject future) {
    jni_group *jg = HANDLE(jni_group, group);
    rmqraft_result r;
    size_t len = 0;
    uint8_t *bytes;
    jobject ref;
    (void)cls;
    bytes = c_bytes(env, data, &len);
    ref = (*env)->NewGlobalRef(env, future);
    if (!bytes || !ref) {
        free(bytes);
        if (ref) (*env)->DeleteGlobalRef(env, ref);
        throw_result(env, RMQRAFT_ERR_IO);
        return;
    }
    r = rmqraft_group_append_async(jg->group, bytes, len, on_append_done, ref);
    free(bytes); /* the library copied it */
    if (r != RMQRAFT_OK) {
        (*env)->DeleteGlobalRef(env, ref); /* the callback never runs */
        throw_result(env, r);
    }
}

JNIEXPORT jbyteArray JNICALL Java_org_rmqraft_Native_read(JNIEnv *env, jclass cls, jlong group, jlong index) {
    jni_group *jg = HANDLE(jni_group, group);
    uint8_t small[4096];
    uint8_t *buf = small;
    size_t len = 0;
    rmqraft_entry_meta meta;
    rmqraft_result r;
    jbyteArray out = NULL;
    (void)cls;
    r = rmqraft_group_read(jg->group, (uint64_t)index, small, sizeof small, &len, &meta);
    if (r == RMQRAFT_ERR_BUFFER_TOO_SMALL) {
        /* Committed entries never change: one retry at the size asked for suffices. */
        buf = malloc(len);
        if (!buf) {
            throw_result(env, RMQRAFT_ERR_IO);
            return NULL;
        }
        r = rmqraft_group_read(jg->group, (uint64_t)index, buf, len, &len, &meta);
    }
    if (r == RMQRAFT_OK) {
        out = (*env)->NewByteArray(env, (jsize)len);
        if (out) (*env)->SetByteArrayRegion(env, out, 0, (jsize)len, (const jbyte *)buf);
    } else {
        throw_result(env, r);
    }
    if (buf != small) free(buf);
    return out;
}

JNIEXPORT jlongArray JNICALL Java_org_rmqraft_Native_status(JNIEnv *env, jclass cls, jlong group) {
    jni_group *jg = HANDLE(jni_group, group);
    rmqraft_group_state st;
    jlong out[8];
    rmqraft_result r = rmqraft_group_status(jg->group, &st);
    (void)cls;
    if (r != RMQRAFT_OK) {
        throw_result(env, r);
        return NULL;
    }
    out[0] = (jlong)st.role;
    out[1] = (jlong)st.self_peer;
    out[2] = (jlong)st.leader_peer;
    out[3] = (jlong)st.term;
    out[4] = (jlong)st.first_index;
    out[5] = (jlong)st.last_index;
    out[6] = (jlong)st.commit_index;
    out[7] = (jlong)st.flushed_index;
    return long_array(env, out, 8);
}

/* Runs on the member's role-notification thread; userdata is a global ref to the listener. */
static void on_role(void *userdata, rmqraft_role role, uint64_t term, int32_t leader_peer) {
    JNIEnv *env = callback_env();
    if (!env) {
        fprintf(stderr, "rmqraft_jni: cannot attach a callback thread; a role change is lost\n");
        return;
    }
    (*env)->CallStaticVoidMethod(env, g_group_class, g_dispatch_role, (jobject)userdata, (jint)role, (jlong)term,
                                 (jint)leader_peer);
    drop_pending_exception(env);
}

/* Serialised by the Java caller (a synchronized method). */
JNIEXPORT void JNICALL Java_org_rmqraft_Native_setRoleListener(JNIEnv *env, jclass cls, jlong group, jobject listener) {
    jni_group *jg = HANDLE(jni_group, group);
    jobject ref = NULL;
    rmqraft_result r;
    (void)cls;
    if (listener) {
        ref = (*env)->NewGlobalRef(env, listener);
        if (!ref) return; /* OutOfMemoryError pending */
    }
    r = rmqraft_group_set_role_callback(jg->group, ref ? on_role : NULL, ref);
    if (r != RMQRAFT_OK) {
        if (ref) (*env)->DeleteGlobalRef(env, ref);
        throw_result(env, r);
        return;
    }
    /* The previous listener is not running and will not run again. */
    if (jg->role_listener) (*env)->DeleteGlobalRef(env, jg->role_listener);
    jg->role_listener = ref;
}

JNIEXPORT jint JNICALL Java_org_rmqraft_Native_waitLeader(JNIEnv *env, jclass cls, jlong group, jlong timeout_ms) {
    jni_group *jg = HANDLE(jni_group, group);
    int32_t leader = -1;
    rmqraft_result r = rmqraft_group_wait_leader(jg->group, timeout_arg(timeout_ms), &leader);
    (void)cls;
    if (r != RMQRAFT_OK) {
        throw_result(env, r);
        return -1;
    }
    return (jint)leader;
}

JNIEXPORT void JNICALL Java_org_rmqraft_Native_transferLeadership(JNIEnv *env, jclass cls, jlong group,
                                                                  jbyteArray peer_id, jlong timeout_ms) {
    jni_group *jg = HANDLE(jni_group, group);
    rmqraft_result r;
    char *peer = c_string(env, peer_id, "peerId");
    (void)cls;
    if (!peer) return;
    r = rmqraft_group_transfer_leadership(jg->group, peer, timeout_arg(timeout_ms));
    free(peer);
    if (r != RMQRAFT_OK) throw_result(env, r);
}

/* ---------------------------------------------------------------- messages (ABI 0.2) */

static jclass g_send_result_class;   /* org.rmqraft.SendResult */
static jclass g_message_view_class;  /* org.rmqraft.MessageView */
static jclass g_topic_config_class;  /* org.rmqraft.TopicConfig */
static jmethodID g_send_result_from; /* SendResult.fromNative */
static jmethodID g_view_add;         /* MessageView.addTo */
static jmethodID g_topic_add;        /* TopicConfig.addTo */
static jmethodID g_complete_send;    /* Group.completeSend */

/* Looked up once, at JNI_OnLoad. */
static int message_ids(JNIEnv *env) {
    if (g_complete_send) return 1;
    g_send_result_class = global_class(env, "org/rmqraft/SendResult");
    g_message_view_class = global_class(env, "org/rmqraft/MessageView");
    g_topic_config_class = global_class(env, "org/rmqraft/TopicConfig");
    if (!g_send_result_class || !g_message_view_class || !g_topic_config_class) return 0;
    g_send_result_from = (*env)->GetStaticMethodID(env, g_send_result_class, "fromNative", "([B[BIJJ)Lorg/rmqraft/SendResult;");
    g_view_add = (*env)->GetStaticMethodID(env, g_message_view_class, "addTo", "(Ljava/util/List;[B[B[B[B[B[B[B[BIJJJJII)V");
    g_topic_add = (*env)->GetStaticMethodID(env, g_topic_config_class, "addTo", "(Ljava/util/List;[BIII)V");
    if (!g_send_result_from || !g_view_add || !g_topic_add) return 0;
    g_complete_send = (*env)->GetStaticMethodID(env, g_group_class, "completeSend",
                                                "(Ljava/lang/Object;ILorg/rmqraft/SendResult;Ljava/lang/String;)V");
    return g_complete_send != NULL;
}

/* NULL for a null array (no exception), else a NUL-terminated copy. *ok is 0 on failure. */
static char *c_string_opt(JNIEnv *env, jbyteArray bytes, int *ok) {
    char *s;
    if (!bytes) return NULL;
    s = c_string(env, bytes, "string");
    if (!s) *ok = 0;
    return s;
}

static jbyteArray java_bytes(JNIEnv *env, const void *data, size_t len) {
    jbyteArray a = (*env)->NewByteArray(env, (jsize)len);
    if (a && len) (*env)->SetByteArrayRegion(env, a, 0, (jsize)len, (const jbyte *)data);
    return a;
}

static jbyteArray java_str(JNIEnv *env, const char *s) { return java_bytes(env, s, strlen(s)); }

static jobject java_send_result(JNIEnv *env, const rmqraft_send_result *r) {
    jbyteArray id = java_str(env, r->msg_id);
    jbyteArray off = java_str(env, r->offset_msg_id);
    jobject out = NULL;
    if (id && off) {
        out = (*env)->CallStaticObjectMethod(env, g_send_result_class, g_send_result_from, id, off, (jint)r->queue_id,
                                             (jlong)r->queue_offset, (jlong)r->commitlog_offset);
    }
    if (id) (*env)->DeleteLocalRef(env, id);
    if (off) (*env)->DeleteLocalRef(env, off);
    return out;
}

/* A C message whose strings are heap copies (free with message_free). */
typedef struct jni_message {
    rmqraft_message m;
    char *topic, *tags, *keys, *props;
    uint8_t *body;
} jni_message;

static void message_free(jni_message *jm) {
    free(jm->topic);
    free(jm->tags);
    free(jm->keys);
    free(jm->props);
    free(jm->body);
}

static int message_from_java(JNIEnv *env, jni_message *jm, jbyteArray topic, jbyteArray tags, jbyteArray keys,
                             jbyteArray props, jbyteArray body, jint queue_id, jint flag, jint delay_level) {
    int ok = 1;
    size_t len = 0;
    memset(jm, 0, sizeof *jm);
    jm->topic = c_string(env, topic, "topic");
    if (!jm->topic) return 0;
    jm->tags = c_string_opt(env, tags, &ok);
    if (ok) jm->keys = c_string_opt(env, keys, &ok);
    if (ok) jm->props = c_string_opt(env, props, &ok);
    if (ok && !body) {
        throw_npe(env, "body");
        ok = 0;
    }
    if (ok) {
        jm->body = c_bytes(env, body, &len);
        if (!jm->body) {
            throw_result(env, RMQRAFT_ERR_IO);
            ok = 0;
        }
    }
    if (!ok) {
        message_free(jm);
        return 0;
    }
    jm->m.topic = jm->topic;
    jm->m.tags = jm->tags;
    jm->m.keys = jm->keys;
    jm->m.properties = jm->props;
    jm->m.body = jm->body;
    jm->m.body_len = len;
    jm->m.queue_id = queue_id;
    jm->m.flag = flag;
    jm->m.delay_level = delay_level;
    return 1;
}

JNIEXPORT jobject JNICALL Java_org_rmqraft_Native_send(JNIEnv *env, jclass cls, jlong group, jbyteArray topic,
                                                       jbyteArray tags, jbyteArray keys, jbyteArray props,
                                                       jbyteArray body, jint queue_id, jint flag, jint delay_level,
                                                       jlong timeout_ms) {
    jni_group *jg = HANDLE(jni_group, group);
    jni_message jm;
    rmqraft_send_result res;
    rmqraft_result r;
    (void)cls;
    if (!message_ids(env)) return NULL;
    if (!message_from_java(env, &jm, topic, tags, keys, props, body, queue_id, flag, delay_level)) return NULL;
    r = rmqraft_message_send(jg->group, &jm.m, timeout_arg(timeout_ms), &res);
    message_free(&jm);
    if (r != RMQRAFT_OK) {
        throw_result(env, r);
        return NULL;
    }
    return java_send_result(env, &res);
}

/* Runs on the library thread that completes appends; userdata is a global ref to the future. */
static void on_send_done(void *userdata, rmqraft_result result, const rmqraft_send_result *res) {
    jobject future = userdata;
    JNIEnv *env = callback_env();
    jstring name;
    jobject value = NULL;
    if (!env) {
        fprintf(stderr, "rmqraft_jni: cannot attach a callback thread; an async send is lost\n");
        return;
    }
    if (res) value = java_send_result(env, res);
    drop_pending_exception(env);
    name = (*env)->NewStringUTF(env, rmqraft_result_name(result));
    (*env)->CallStaticVoidMethod(env, g_group_class, g_complete_send, future, (jint)result, value, name);
    drop_pending_exception(env);
    if (name) (*env)->DeleteLocalRef(env, name);
    if (value) (*env)->DeleteLocalRef(env, value);
    (*env)->DeleteGlobalRef(env, future);
}

JNIEXPORT void JNICALL Java_org_rmqraft_Native_sendAsync(JNIEnv *env, jclass cls, jlong group, jbyteArray topic,
                                                         jbyteArray tags, jbyteArray keys, jbyteArray props,
                                                         jbyteArray body, jint queue_id, jint flag, jint delay_level,
                                                         jobject future) {
    jni_group *jg = HANDLE(jni_group, group);
    jni_message jm;
    rmqraft_result r;
    jobject ref;
    (void)cls;
    if (!message_ids(env)) return;
    if (!message_from_java(env, &jm, topic, tags, keys, props, body, queue_id, flag, delay_level)) return;
    ref = (*env)->NewGlobalRef(env, future);
    if (!ref) {
        message_free(&jm);
        throw_result(env, RMQRAFT_ERR_IO);
        return;
    }
    r = rmqraft_message_send_async(jg->group, &jm.m, on_send_done, ref);
    message_free(&jm); /* the library copied it */
    if (r != RMQRAFT_OK) {
        (*env)->DeleteGlobalRef(env, ref); /* the callback never runs */
        throw_result(env, r);
    }
}

/* Collects message views into a java.util.List on the calling thread. */
typedef struct view_sink {
    JNIEnv *env;
    jobject list;
} view_sink;

static int on_view(void *userdata, const rmqraft_message_view *m) {
    view_sink *s = userdata;
    JNIEnv *env = s->env;
    jbyteArray a[8];
    int i, ok = 1;
    a[0] = java_str(env, m->topic);
    a[1] = java_str(env, m->tags);
    a[2] = java_str(env, m->keys);
    a[3] = java_str(env, m->msg_id);
    a[4] = java_str(env, m->offset_msg_id);
    a[5] = java_str(env, m->properties);
    a[6] = java_bytes(env, m->body, m->body_len);
    a[7] = java_bytes(env, m->record, m->record_len);
    for (i = 0; i < 8; i++) ok = ok && a[i] != NULL;
    if (ok) {
        (*env)->CallStaticVoidMethod(env, g_message_view_class, g_view_add, s->list, a[0], a[1], a[2], a[3], a[4], a[5],
                                     a[6], a[7], (jint)m->queue_id, (jlong)m->queue_offset, (jlong)m->commitlog_offset,
                                     (jlong)m->born_timestamp_ms, (jlong)m->store_timestamp_ms, (jint)m->flag,
                                     (jint)m->reconsume_times);
    }
    for (i = 0; i < 8; i++) {
        if (a[i]) (*env)->DeleteLocalRef(env, a[i]);
    }
    return (*env)->ExceptionCheck(env) ? 1 : 0; /* a Java exception stops the call */
}

/* After a call that fed a view_sink: a pending Java exception wins over the result. */
static void finish_views(JNIEnv *env, rmqraft_result r) {
    if ((*env)->ExceptionCheck(env)) return;
    if (r != RMQRAFT_OK) throw_result(env, r);
}

JNIEXPORT jlong JNICALL Java_org_rmqraft_Native_pull(JNIEnv *env, jclass cls, jlong group, jbyteArray topic,
                                                     jint queue_id, jlong offset, jint max_messages,
                                                     jbyteArray tag_expression, jobject out) {
    jni_group *jg = HANDLE(jni_group, group);
    view_sink sink;
    uint64_t next = (uint64_t)offset;
    rmqraft_result r;
    int ok = 1;
    char *t, *tags;
    (void)cls;
    if (!message_ids(env)) return 0;
    t = c_string(env, topic, "topic");
    if (!t) return 0;
    tags = c_string_opt(env, tag_expression, &ok);
    if (!ok) {
        free(t);
        return 0;
    }
    sink.env = env;
    sink.list = out;
    r = rmqraft_queue_pull(jg->group, t, (int32_t)queue_id, (uint64_t)offset, max_messages < 0 ? 0u : (uint32_t)max_messages,
                           tags, on_view, &sink, &next);
    free(t);
    free(tags);
    finish_views(env, r);
    return (jlong)next;
}

JNIEXPORT jlongArray JNICALL Java_org_rmqraft_Native_queueOffsets(JNIEnv *env, jclass cls, jlong group,
                                                                  jbyteArray topic, jint queue_id) {
    jni_group *jg = HANDLE(jni_group, group);
    uint64_t min = 0, max = 0;
    jlong out[2];
    rmqraft_result r;
    char *t = c_string(env, topic, "topic");
    (void)cls;
    if (!t) return NULL;
    r = rmqraft_queue_offsets(jg->group, t, (int32_t)queue_id, &min, &max);
    free(t);
    if (r != RMQRAFT_OK) {
        throw_result(env, r);
        return NULL;
    }
    out[0] = (jlong)min;
    out[1] = (jlong)max;
    return long_array(env, out, 2);
}

JNIEXPORT void JNICALL Java_org_rmqraft_Native_queryByKey(JNIEnv *env, jclass cls, jlong group, jbyteArray topic,
                                                          jbyteArray key, jint max_messages, jlong begin_ms,
                                                          jlong end_ms, jobject out) {
    jni_group *jg = HANDLE(jni_group, group);
    view_sink sink;
    rmqraft_result r;
    char *t, *k;
    (void)cls;
    if (!message_ids(env)) return;
    t = c_string(env, topic, "topic");
    if (!t) return;
    k = c_string(env, key, "key");
    if (!k) {
        free(t);
        return;
    }
    sink.env = env;
    sink.list = out;
    r = rmqraft_message_query_by_key(jg->group, t, k, max_messages < 0 ? 0u : (uint32_t)max_messages, begin_ms, end_ms,
                                     on_view, &sink);
    free(t);
    free(k);
    finish_views(env, r);
}

JNIEXPORT void JNICALL Java_org_rmqraft_Native_viewById(JNIEnv *env, jclass cls, jlong group, jbyteArray msg_id,
                                                        jobject out) {
    jni_group *jg = HANDLE(jni_group, group);
    view_sink sink;
    rmqraft_result r;
    char *id;
    (void)cls;
    if (!message_ids(env)) return;
    id = c_string(env, msg_id, "msgId");
    if (!id) return;
    sink.env = env;
    sink.list = out;
    r = rmqraft_message_view_by_id(jg->group, id, on_view, &sink);
    free(id);
    finish_views(env, r);
}

JNIEXPORT void JNICALL Java_org_rmqraft_Native_topicUpdate(JNIEnv *env, jclass cls, jlong group, jbyteArray topic,
                                                           jint read_queues, jint write_queues, jint perm,
                                                           jlong timeout_ms) {
    jni_group *jg = HANDLE(jni_group, group);
    rmqraft_result r;
    char *t = c_string(env, topic, "topic");
    (void)cls;
    if (!t) return;
    r = rmqraft_topic_update(jg->group, t, read_queues, write_queues, perm, timeout_arg(timeout_ms));
    free(t);
    if (r != RMQRAFT_OK) throw_result(env, r);
}

JNIEXPORT void JNICALL Java_org_rmqraft_Native_topicDelete(JNIEnv *env, jclass cls, jlong group, jbyteArray topic,
                                                           jlong timeout_ms) {
    jni_group *jg = HANDLE(jni_group, group);
    rmqraft_result r;
    char *t = c_string(env, topic, "topic");
    (void)cls;
    if (!t) return;
    r = rmqraft_topic_delete(jg->group, t, timeout_arg(timeout_ms));
    free(t);
    if (r != RMQRAFT_OK) throw_result(env, r);
}

static int on_topic(void *userdata, const char *topic, int32_t read_queues, int32_t write_queues, int32_t perm) {
    view_sink *s = userdata;
    JNIEnv *env = s->env;
    jbyteArray name = java_str(env, topic);
    if (name) {
        (*env)->CallStaticVoidMethod(env, g_topic_config_class, g_topic_add, s->list, name, (jint)read_queues,
                                     (jint)write_queues, (jint)perm);
        (*env)->DeleteLocalRef(env, name);
    }
    return (*env)->ExceptionCheck(env) ? 1 : 0;
}

JNIEXPORT void JNICALL Java_org_rmqraft_Native_topicList(JNIEnv *env, jclass cls, jlong group, jobject out) {
    jni_group *jg = HANDLE(jni_group, group);
    view_sink sink;
    (void)cls;
    if (!message_ids(env)) return;
    sink.env = env;
    sink.list = out;
    finish_views(env, rmqraft_topic_list(jg->group, on_topic, &sink));
}

JNIEXPORT void JNICALL Java_org_rmqraft_Native_offsetCommit(JNIEnv *env, jclass cls, jlong group,
                                                            jbyteArray consumer_group, jbyteArray topic, jint queue_id,
                                                            jlong offset, jlong timeout_ms) {
    jni_group *jg = HANDLE(jni_group, group);
    rmqraft_result r;
    char *cg, *t;
    (void)cls;
    cg = c_string(env, consumer_group, "consumerGroup");
    if (!cg) return;
    t = c_string(env, topic, "topic");
    if (!t) {
        free(cg);
        return;
    }
    r = rmqraft_consumer_offset_commit(jg->group, cg, t, (int32_t)queue_id, (uint64_t)offset, timeout_arg(timeout_ms));
    free(cg);
    free(t);
    if (r != RMQRAFT_OK) throw_result(env, r);
}

JNIEXPORT jlong JNICALL Java_org_rmqraft_Native_offsetFetch(JNIEnv *env, jclass cls, jlong group,
                                                            jbyteArray consumer_group, jbyteArray topic, jint queue_id) {
    jni_group *jg = HANDLE(jni_group, group);
    rmqraft_result r;
    int64_t offset = -1;
    char *cg, *t;
    (void)cls;
    cg = c_string(env, consumer_group, "consumerGroup");
    if (!cg) return -1;
    t = c_string(env, topic, "topic");
    if (!t) {
        free(cg);
        return -1;
    }
    r = rmqraft_consumer_offset_fetch(jg->group, cg, t, (int32_t)queue_id, &offset);
    free(cg);
    free(t);
    if (r != RMQRAFT_OK) {
        throw_result(env, r);
        return -1;
    }
    return (jlong)offset;
}
