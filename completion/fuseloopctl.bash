# bash completion for fuseloopctl(1): commands, options per command, option values, files for
# SOURCE, directories for --mount, and mapping names (from "fuseloopctl list") for unmap, status
# and wait. Needs nothing from the bash-completion package.

_fuseloopctl_mappings() { # [devices]: the names (and with "devices" the devices) of the mappings
        local ctl=$1 name dev rest

        # Quietly nothing when the daemon cannot be asked (no bus, polkit, ...).
        while read -r name dev rest; do
                [ -n "$name" ] || continue
                printf '%s\n' "$name"
                [ "${2:-}" = devices ] && [[ $dev == /dev/* ]] && printf '%s\n' "$dev"
        done < <("$ctl" --no-ask-password list --no-legend 2>/dev/null)
}

_fuseloopctl() {
        local cur=${COMP_WORDS[COMP_CWORD]} prev= ctl=${COMP_WORDS[0]} verb= i w npos=0 opt
        local verbs='map unmap list status monitor wait'
        local global='--help --version --no-ask-password'
        local with_arg='--offset --size --sector-size --timeout --mount --partition'
        local -A options=(
                [map]='--partscan --offset --size --sector-size --direct-io= --passthrough= --bind --timeout --untrusted --mount --partition'
                [unmap]='--lazy'
                [list]='--json --json= --no-legend --bytes'
                [status]='--json --json= --bytes'
                [monitor]='--json --json='
                [wait]='--removed --timeout'
        )

        COMPREPLY=()
        [ "$COMP_CWORD" -gt 0 ] && prev=${COMP_WORDS[COMP_CWORD - 1]}
        # The program as it was called, so that a build tree's fuseloopctl asks its own daemon.
        [[ $ctl == */* && -x $ctl ]] || ctl=fuseloopctl

        # The command, and how many positional arguments come before the word being completed.
        for ((i = 1; i < COMP_CWORD; i++)); do
                w=${COMP_WORDS[i]}
                case $w in
                =) continue ;;
                -*)
                        # An option that takes the next word as its value (not with "=").
                        [[ " $with_arg " == *" $w "* && ${COMP_WORDS[i + 1]:-} != = ]] && ((i++))
                        continue ;;
                esac
                [ "${COMP_WORDS[i - 1]}" = = ] && continue
                if [ -z "$verb" ]; then verb=$w; else ((npos++)); fi
        done

        # --opt=value: bash splits at '=' (COMP_WORDBREAKS), giving "--opt" "=" "value".
        if [ "$cur" = = ] || [ "$prev" = = ]; then
                [ "$cur" = = ] && opt=$prev || opt=${COMP_WORDS[COMP_CWORD - 2]}
                [ "$cur" = = ] && cur=
                case $opt in
                --direct-io | --passthrough) mapfile -t COMPREPLY < <(compgen -W 'on off' -- "$cur") ;;
                --json) mapfile -t COMPREPLY < <(compgen -W 'short pretty' -- "$cur") ;;
                esac
                return 0
        fi

        case $prev in
        --mount)
                compopt -o filenames 2>/dev/null
                mapfile -t COMPREPLY < <(compgen -d -- "$cur")
                return 0 ;;
        --sector-size)
                mapfile -t COMPREPLY < <(compgen -W '512 1024 2048 4096' -- "$cur")
                return 0 ;;
        --offset | --size | --timeout | --partition)
                return 0 ;;
        esac

        if [ -z "$verb" ]; then
                if [[ $cur == -* ]]; then
                        mapfile -t COMPREPLY < <(compgen -W "$global" -- "$cur")
                else
                        mapfile -t COMPREPLY < <(compgen -W "$verbs" -- "$cur")
                fi
                return 0
        fi

        if [[ $cur == -* ]]; then
                mapfile -t COMPREPLY < <(compgen -W "${options[$verb]:-} --no-ask-password" -- "$cur")
                # An option that ends in '=' wants its value right after it.
                [[ ${COMPREPLY[*]} == *= ]] && compopt -o nospace 2>/dev/null
                return 0
        fi

        case $verb in
        map)
                # NAME is free; SOURCE is a file or block device.
                if [ "$npos" -eq 1 ]; then
                        compopt -o filenames 2>/dev/null
                        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
                fi ;;
        unmap)
                [ "$npos" -eq 0 ] && mapfile -t COMPREPLY < <(compgen -W "$(_fuseloopctl_mappings "$ctl" devices)" -- "$cur") ;;
        status | wait)
                [ "$npos" -eq 0 ] && mapfile -t COMPREPLY < <(compgen -W "$(_fuseloopctl_mappings "$ctl")" -- "$cur") ;;
        esac
        return 0
}

complete -F _fuseloopctl fuseloopctl
